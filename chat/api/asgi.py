"""The ASGI handler of the OpenAI-compatible API (/v1/): Django without the browser middleware.

Under ASGI Django runs each hook of a classic middleware (process_request, process_view,
process_response) in a worker thread: with the site's middleware that is about fifteen thread
hops per request. /v1 callers are authenticated by API key alone (its views never read the
session, the logged-in user, CSRF tokens or messages), so its requests skip that middleware.
The CORS headers (and preflight answers), the security headers, the HTTPS redirect and
CommonMiddleware's checks still apply, called on the event loop: those hooks do no I/O.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.exception import convert_exception_to_response
from django.utils.module_loading import import_string

from aihub.lanes import LaneASGIHandler

PREFIX = "/v1/"

# What /v1 requests skip of settings.MIDDLEWARE, and why. Every entry of settings.MIDDLEWARE is named
# here or in the two lists below: chat/tests/test_api_asgi.py fails on one that is not, and so does
# the server at start, so a middleware added later (CSP, Sentry, request ids) is decided on, not lost.
SKIPPED = {
    "deploy.middleware.ProbeMiddleware": "answers /healthz, /readyz and /metrics, none under /v1/",
    "servestatic.middleware.ServeStaticMiddleware": "no static files under /v1/",
    "django.contrib.sessions.middleware.SessionMiddleware": "callers send an API key, never a session",
    "django.middleware.csrf.CsrfViewMiddleware": "no cookies, so no cross-site request to forge",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "the caller is the API key's user",
    "django.contrib.auth.middleware.LoginRequiredMiddleware": "the views refuse a request without a key",
    "django.contrib.messages.middleware.MessageMiddleware": "no pages to show messages on",
    "django_htmx.middleware.HtmxMiddleware": "no htmx requests",
    "csp.middleware.CSPMiddleware": "JSON and event streams only: no page a browser renders",
    "allauth.account.middleware.AccountMiddleware": "no login flows",
    "accounts.middleware.StaffTwoFactorMiddleware": "staff pages only (the admin, /ops/), none under /v1/",
}
# Kept, their hooks called on the event loop: they do no I/O.
IN_LOOP = {
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
}
# Kept as they are: async middleware.
ASYNC = {"corsheaders.middleware.CorsMiddleware"}


def in_loop(middleware_class: type) -> type:
    """The middleware with its hooks called on the event loop, for hooks that do no I/O."""

    class InLoop(middleware_class):
        async def __acall__(self, request: Any) -> Any:
            response = self.process_request(request) if hasattr(self, "process_request") else None
            response = response or await self.get_response(request)
            return self.process_response(request, response) if hasattr(self, "process_response") else response

    InLoop.__name__ = InLoop.__qualname__ = f"InLoop{middleware_class.__name__}"
    return InLoop


def api_middleware() -> list[type]:
    """settings.MIDDLEWARE without SKIPPED, outermost first, each ready to wrap an async handler."""
    chain = []
    for path in settings.MIDDLEWARE:
        if path in SKIPPED:
            continue
        if path in IN_LOOP:
            chain.append(in_loop(import_string(path)))
        elif path in ASYNC:
            chain.append(import_string(path))
        else:
            raise ImproperlyConfigured(f"{path} is in settings.MIDDLEWARE but not decided on for /v1 in {__name__}.")
    return chain


class ApiHandler(LaneASGIHandler):
    """Django's ASGI handler (each request in a lane) with the middleware chain of api_middleware()."""

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        for middleware in reversed(api_middleware()):
            handler = convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler


def is_api_request(scope: dict[str, Any]) -> bool:
    return scope["type"] == "http" and scope["path"].removeprefix(scope.get("root_path", "")).startswith(PREFIX)
