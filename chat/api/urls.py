from django.urls import path, register_converter

from . import docs_views, file_views, openai_views, rest_views, search_views
from .decorators import unknown_endpoint


class AnyTextConverter:
    """Like Django's `path`, newlines included: `.+` left them out, and such a path got Django's HTML 404
    instead of the API's JSON one (Schemathesis found it)."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyTextConverter, "anytext")

# Mounted at /v1: the OpenAI-compatible API.
openai_urlpatterns = [
    path("chat/completions", openai_views.chat_completions, name="v1_chat_completions"),
    path("embeddings", openai_views.embeddings, name="v1_embeddings"),
    path("models", openai_views.models, name="v1_models"),
    path("models/<anytext:model_id>", openai_views.model_detail, name="v1_model"),
    path("<anytext:path>", unknown_endpoint),
]

# Mounted at /api/v1: the REST API (session login or API key).
rest_urlpatterns = [
    path("chat/completions", rest_views.chat_completion, name="api_chat_completion"),
    path("chat/stream", rest_views.chat_stream, name="api_chat_stream"),
    path("estimate", rest_views.estimate, name="api_estimate"),
    path("sessions", rest_views.session_list, name="api_sessions"),
    path("sessions/<int:pk>", rest_views.session_detail, name="api_session"),
    path("models", rest_views.models, name="api_models"),
    path("stats", rest_views.stats, name="api_stats"),
    path("search", search_views.web_search, name="api_search"),
    path("files", file_views.upload_file, name="api_files"),
    path("<anytext:path>", unknown_endpoint),
]

# Mounted at /api: the schema, the reference and the guide.
docs_urlpatterns = [
    path("openapi.json", docs_views.openapi_schema, name="api_openapi"),
    path("docs", docs_views.api_docs, name="api_docs"),
    path("guide", docs_views.api_guide, name="api_guide"),
]
