from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import health, metrics


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """Liveness: the process answers. Nothing else is checked, so a database outage does not get
    every replica restarted."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def readyz(request):
    checks = health.readiness()
    ready = all(check["status"] == "ok" for check in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


@login_not_required
@never_cache
@require_GET
def metrics_view(request):
    if not metrics.scrape_allowed(request):
        return JsonResponse({"error": "metrics are restricted (METRICS_ALLOWED_IPS / METRICS_TOKEN)"}, status=403)
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)
