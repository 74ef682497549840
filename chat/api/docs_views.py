"""The API's OpenAPI schema, its reference page (Redoc) and the developer guide."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

SCHEMA_PATH = Path(__file__).with_name("openapi.json")


@cache
def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@login_not_required
@require_GET
def openapi_schema(request):
    schema = {**_schema(), "servers": [{"url": request.build_absolute_uri("/").rstrip("/")}]}
    return JsonResponse(schema, json_dumps_params={"indent": 1})


# Redoc draws its vendor's logo from a CDN: only this site's own images may load, so reading the
# docs tells no third party about it. Redoc needs inline styles and a blob: worker for search.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; worker-src 'self' blob:; font-src 'self' data:; connect-src 'self'"
)


@login_not_required
@require_GET
def api_docs(request):
    response = render(request, "api/docs.html")
    response["Content-Security-Policy"] = DOCS_CSP
    return response


@login_not_required
@require_GET
def api_guide(request):
    return render(
        request,
        "api/guide.html",
        {
            "base_url": request.build_absolute_uri("/v1"),
            "rest_url": request.build_absolute_uri("/api/v1"),
        },
    )
