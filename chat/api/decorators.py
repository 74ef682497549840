"""The wrapper every API view wears: its own auth (no login redirect), OpenAI-shaped errors."""

from __future__ import annotations

import functools

from django.contrib.auth.decorators import login_not_required
from django.views.decorators.csrf import csrf_exempt

from aihub import shared_state

from .errors import ApiError


def api_view(*methods: str):
    """Allow only `methods` (405 otherwise) and turn ApiError into its JSON response.

    csrf_exempt because a Bearer key is never sent by a browser on its own; session requests are
    checked for CSRF in authenticate_request."""

    def decorate(view):
        @functools.wraps(view)
        async def wrapper(request, *args, **kwargs):
            try:
                if request.method not in methods:
                    raise ApiError(
                        405,
                        f"Method {request.method} is not allowed here; use {', '.join(methods)}.",
                        "method_not_allowed",
                    )
                with shared_state.reading_ahead():
                    return await view(request, *args, **kwargs)
            except ApiError as exc:
                response = exc.response()
                if exc.status == 405:
                    response["Allow"] = ", ".join(methods)
                return response

        wrapper.allowed_methods = methods  # read by the test that holds the OpenAPI schema to the routes
        return login_not_required(csrf_exempt(wrapper))

    return decorate


@api_view("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
async def unknown_endpoint(request, path: str):
    """Any other URL under the API prefixes: a 404 in the API's own error shape, not an HTML page."""
    raise ApiError(404, f"There is no endpoint {request.method} {request.path}. See /api/docs.", "unknown_endpoint")
