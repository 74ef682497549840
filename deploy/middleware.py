from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from . import views

# Probes and scrapers call by IP over plain HTTP (kubelet, Docker's HEALTHCHECK, Prometheus): these
# answer before the host check and the HTTPS redirect, which would refuse or redirect them.
ENDPOINTS = {"/healthz": views.healthz, "/readyz": views.readyz, "/metrics": views.metrics_view}


class ProbeMiddleware:
    """Async under ASGI: a sync-only middleware would run the rest of the chain, views included, in
    an async_to_sync bridge whose executor quits when the view returns, so the database calls of a
    response still streaming after that (a generation settling its usage) would fail."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        view = ENDPOINTS.get(request.path_info)
        return view(request) if view else self.get_response(request)

    async def __acall__(self, request):
        view = ENDPOINTS.get(request.path_info)
        if view is not None:
            return await sync_to_async(view)(request)  # the readiness probe queries the database
        return await self.get_response(request)
