from asgiref.sync import sync_to_async

from aihub.async_middleware import SyncAndAsyncMiddleware

from . import views

# Probes and scrapers call by IP over plain HTTP (kubelet, Docker's HEALTHCHECK, Prometheus): these
# answer before the host check and the HTTPS redirect, which would refuse or redirect them.
ENDPOINTS = {"/healthz": views.healthz, "/readyz": views.readyz, "/metrics": views.metrics_view}


class ProbeMiddleware(SyncAndAsyncMiddleware):
    def handle(self, request):
        view = ENDPOINTS.get(request.path_info)
        return view(request) if view else self.get_response(request)

    async def ahandle(self, request):
        view = ENDPOINTS.get(request.path_info)
        if view is not None:
            return await sync_to_async(view)(request)  # the readiness probe queries the database
        return await self.get_response(request)
