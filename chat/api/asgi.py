"""The ASGI handler of the OpenAI-compatible API (/v1/): Django without the browser middleware.

Under ASGI Django runs each hook of a classic middleware (process_request, process_view,
process_response) in a worker thread: with the site's middleware that is about fifteen thread
hops per request. /v1 callers are authenticated by API key alone (its views never read the
session, the logged-in user, CSRF tokens or messages), so its requests skip that middleware.
The CORS headers (and preflight answers), the security headers, the HTTPS redirect and
CommonMiddleware's checks still apply, called on the event loop: those hooks do no I/O.
"""

from __future__ import annotations

from corsheaders.middleware import CorsMiddleware
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware

PREFIX = "/v1/"


def in_loop(middleware_class):
    """The middleware with its hooks called on the event loop, for hooks that do no I/O."""

    class InLoop(middleware_class):
        async def __acall__(self, request):
            response = self.process_request(request) if hasattr(self, "process_request") else None
            response = response or await self.get_response(request)
            return self.process_response(request, response) if hasattr(self, "process_response") else response

    InLoop.__name__ = InLoop.__qualname__ = f"InLoop{middleware_class.__name__}"
    return InLoop


# Outermost first, in the order of settings.MIDDLEWARE. CorsMiddleware is async itself.
MIDDLEWARE = [CorsMiddleware, in_loop(SecurityMiddleware), in_loop(CommonMiddleware), in_loop(XFrameOptionsMiddleware)]


class ApiHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        for middleware in reversed(MIDDLEWARE):
            handler = convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler


def is_api_request(scope) -> bool:
    return scope["type"] == "http" and scope["path"].removeprefix(scope.get("root_path", "")).startswith(PREFIX)
