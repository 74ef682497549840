from django.urls import path

from . import openai_views

# Mounted at /v1: the OpenAI-compatible API.
openai_urlpatterns = [
    path("chat/completions", openai_views.chat_completions, name="v1_chat_completions"),
    path("models", openai_views.models, name="v1_models"),
]
