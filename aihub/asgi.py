"""ASGI entry point: HTTP through Django, websockets through Channels (session auth, origin check)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")
django.setup(set_prefix=False)  # as get_asgi_application() does: before importing consumers (the app registry)

from aihub.lanes import LaneASGIHandler  # noqa: E402

django_asgi_app = LaneASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from aihub.body_limit import BodyLimit  # noqa: E402
from billing.metering import encoding  # noqa: E402
from chat import upkeep  # noqa: E402
from chat.api.asgi import ApiHandler, is_api_request  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from deploy.metrics import HttpMetrics  # noqa: E402

encoding()  # the tokenizer's tables loaded at start (about 0.1 s of CPU), not in the first request that counts
api_asgi_app = ApiHandler()  # /v1/: API keys only, so none of the session/CSRF/login/messages middleware


async def http_app(scope, receive, send):
    app = api_asgi_app if is_api_request(scope) else django_asgi_app
    await app(scope, receive, send)


router = ProtocolTypeRouter(
    {
        "http": HttpMetrics(BodyLimit(http_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


async def application(scope, receive, send):
    # The process's background upkeep (heartbeat, sweeper, outbox) starts with its first connection (the
    # first health probe): daphne has no start-up hook.
    upkeep.start()
    await router(scope, receive, send)
