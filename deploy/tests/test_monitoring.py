"""The monitoring profile's files: Debian's Prometheus, with the repository's scrape settings, scrapes a
live app; every series the Grafana dashboard queries must exist there (Grafana itself cannot run here)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from decimal import Decimal

import httpx
import pytest
import yaml
from django.conf import settings
from django.db import connection

from accounts.api_keys import issue_key
from aihub.testing import app_env, free_port, start_server, stop_process, wait_until_healthy
from billing.models import Plan
from billing.subscriptions import start_subscription
from chat.models import AIModel, Provider

from .conftest import tool

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the app process needs the shared PostgreSQL database"
    ),
]

DOCKER = settings.BASE_DIR / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "aihub.json"


def dashboard_series() -> set[str]:
    exprs = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\b(aihub_[a-z_]+)\b", expr)}


@pytest.fixture
def app_server(upstream):
    env = app_env(upstream.url)
    process, url = start_server(env)
    wait_until_healthy(url, process)
    yield url
    stop_process(process)


@pytest.fixture
def prometheus(app_server, tmp_path):
    """Debian's Prometheus with the repository's prometheus.yml, its target swapped for the live app."""
    binary = tool("prometheus")
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    job.pop("dns_sd_configs")  # compose's DNS name of the replicas; here the one process
    job["static_configs"] = [{"targets": [app_server.removeprefix("http://")]}]
    job["scrape_interval"] = "1s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process, path="/-/ready")
    yield url
    process.terminate()
    process.wait(timeout=10)


def traffic(app_server: str, user, free_user) -> None:
    """Requests that give every figure on the dashboard a value: a reply, an upstream failure with
    its fallback, a refusal."""
    paid = {"input_price_per_m": Decimal("1.5"), "output_price_per_m": Decimal("2")}
    ok = AIModel.objects.create(
        slug="t/ok", provider=Provider.OPENAI_COMPAT, upstream_id="fake-model", name="ok", **paid
    )
    AIModel.objects.create(
        slug="t/failing", provider=Provider.OPENAI_COMPAT, upstream_id="fail-500", name="failing", fallback=ok, **paid
    )
    start_subscription(user, Plan.objects.get(slug="enterprise"))
    _, key = issue_key(user, "monitoring")
    _, free_key = issue_key(free_user, "monitoring")
    for model, raw_key, status in [("t/ok", key, 200), ("t/failing", key, 200), ("t/ok", free_key, 403)]:
        response = httpx.post(
            f"{app_server}/v1/chat/completions",
            headers={"Authorization": f"Bearer {raw_key}"},
            json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": model == "t/ok"},
            timeout=30,
        )
        assert response.status_code == status, response.text


def test_every_series_the_dashboard_queries_exists_in_prometheus(app_server, prometheus, user, free_user):
    traffic(app_server, user, free_user)
    wanted = dashboard_series()
    assert len(wanted) >= 10
    deadline = time.monotonic() + 30
    while True:
        missing = {
            name
            for name in wanted
            if not httpx.get(f"{prometheus}/api/v1/series", params={"match[]": name}).json()["data"]
        }
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not missing, f"the dashboard queries series Prometheus does not have: {sorted(missing)}"
    targets = httpx.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"]
