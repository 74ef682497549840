"""The OpenAPI schema (/api/openapi.json, hand-written in chat/api/openapi.json) against the server:
every API route and method is documented and every documented one exists. Schemathesis (.ci/schemathesis.py,
run by .ci/run) then holds the bodies, statuses and events to the schema against a live server."""

from __future__ import annotations

import json
import re

import pytest

from chat.api.decorators import unknown_endpoint
from chat.api.docs_views import SCHEMA_PATH
from chat.api.urls import openai_urlpatterns, rest_urlpatterns

DOCUMENTED_METHODS = {"get", "post", "put", "patch", "delete"}


def _template(prefix: str, route: str) -> str:
    """A Django route as an OpenAPI path with its parameters unnamed: models/<path:id> -> /v1/models/{}."""
    return prefix + re.sub(r"<(?:\w+:)?\w+>", "{}", route)


def routed() -> dict[str, set[str]]:
    routes = {}
    for prefix, patterns in (("/v1/", openai_urlpatterns), ("/api/v1/", rest_urlpatterns)):
        for pattern in patterns:
            if pattern.callback is unknown_endpoint:
                continue
            methods = {m.lower() for m in pattern.callback.allowed_methods} & DOCUMENTED_METHODS
            routes[_template(prefix, str(pattern.pattern))] = methods
    return routes


def documented() -> dict[str, set[str]]:
    schema = json.loads(SCHEMA_PATH.read_text())
    return {re.sub(r"\{\w+\}", "{}", path): set(item) & DOCUMENTED_METHODS for path, item in schema["paths"].items()}


def test_the_schema_documents_every_api_route_and_method_and_nothing_else():
    assert documented() == routed()


@pytest.mark.django_db
def test_the_schema_is_served_with_this_servers_url(client):
    schema = client.get("/api/openapi.json").json()
    assert schema["servers"] == [{"url": "http://testserver"}]
    assert schema["openapi"].startswith("3.")
