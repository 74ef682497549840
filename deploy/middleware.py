from . import views

# Probes and scrapers call by IP over plain HTTP (kubelet, Docker's HEALTHCHECK, Prometheus): these
# answer before the host check and the HTTPS redirect, which would refuse or redirect them.
ENDPOINTS = {"/healthz": views.healthz, "/readyz": views.readyz, "/metrics": views.metrics_view}


class ProbeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = ENDPOINTS.get(request.path_info)
        return view(request) if view else self.get_response(request)
