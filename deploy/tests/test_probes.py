"""/healthz (alive), /readyz (database and Redis), answered to probes that call by IP over HTTP."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_says_the_process_is_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(client, settings):
    settings.REDIS_URL = ""
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert list(body["checks"]) == ["database"]
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_is_unavailable_while_redis_is_unreachable(client, settings, refused_url):
    settings.REDIS_URL = refused_url.replace("http://", "redis://") + "/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"] == {
        "status": "failing",
        "error": "ConnectionError",
        "ms": body["checks"]["redis"]["ms"],
    }


def test_readyz_checks_redis_when_it_is_configured(client, settings):
    import os

    if not os.environ.get("REDIS_URL"):
        pytest.skip("no REDIS_URL: no Redis to check against")
    settings.REDIS_URL = os.environ["REDIS_URL"]
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"]["status"] == "ok"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_by_ip_over_plain_http_in_production(client, settings, path):
    """Kubelet and Docker's HEALTHCHECK call http://<pod ip>/: no host check, no HTTPS redirect."""
    settings.ALLOWED_HOSTS = ["aihub.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.REDIS_URL = ""
    response = client.get(path, HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")


def test_other_pages_keep_the_host_check(client, settings):
    settings.ALLOWED_HOSTS = ["aihub.example.com"]
    assert client.get("/", HTTP_HOST="10.1.2.3:8000").status_code == 400
