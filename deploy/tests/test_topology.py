"""The production topology on this host: Debian's nginx, configured by the repository's template (TLS,
static files, websockets, unbuffered SSE), in front of two production server processes
(`manage.py serve`) with DEBUG=0 on PostgreSQL and Redis."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import signal
import subprocess
import time

import httpx
import pytest
from django.conf import settings
from django.db import connection

from accounts.api_keys import issue_key
from aihub.testing import (
    app_env,
    chromium_page,
    free_port,
    session_key_for,
    start_server,
    stop_process,
    wait_until_healthy,
)
from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat.models import AIModel, Conversation, Provider

from .conftest import PRODUCTION_SECRET_KEY, production_settings, tool

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two processes need a shared PostgreSQL database"),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="two processes need Redis for their channel layer"),
]

TEMPLATE = settings.BASE_DIR / "docker" / "nginx" / "templates" / "aihub.conf.template"
PASSWORD = "correct horse battery"


def self_signed_certificate(directory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def render(template: str, values: dict[str, str]) -> str:
    """What the nginx image's envsubst does with the template: ${NGINX_*} replaced, nginx's $vars kept."""
    rendered = re.sub(r"\$\{(NGINX_[A-Z_]+)\}", lambda m: values[m.group(1)], template)
    assert "${" not in rendered
    return rendered


@pytest.fixture(scope="module")
def topology(django_db_setup, fake_upstream, collected_static, tmp_path_factory):
    """nginx on https://127.0.0.1:<port> before two app processes: {"url", "apps", "processes"}."""
    nginx = tool("nginx")
    workdir = tmp_path_factory.mktemp("nginx")
    env = app_env(fake_upstream.url, **production_settings(collected_static), BEHIND_PROXY="1")
    apps = [start_server(env) for _ in range(2)]
    for process, url in apps:
        wait_until_healthy(url, process)
    https_port = free_port()
    cert, key = self_signed_certificate(workdir)
    site = render(
        TEMPLATE.read_text(),
        {
            "NGINX_UPSTREAM_SERVERS": " ".join(f"server {url.removeprefix('http://')};" for _, url in apps),
            "NGINX_HTTP_PORT": str(free_port()),
            "NGINX_HTTPS_PORT": str(https_port),
            "NGINX_SERVER_NAME": "127.0.0.1",
            "NGINX_TLS_CERT": cert,
            "NGINX_TLS_KEY": key,
            "NGINX_STATIC_ROOT": str(collected_static),
        },
    )
    (workdir / "aihub.conf").write_text(site)
    temp_paths = "\n".join(
        f"  {kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (workdir / "nginx.conf").write_text(
        f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  include /etc/nginx/mime.types;
  access_log {workdir}/access.log;
{temp_paths}
  include {workdir}/aihub.conf;
}}
"""
    )
    checked = subprocess.run([nginx, "-t", "-p", str(workdir), "-c", str(workdir / "nginx.conf")], capture_output=True)
    assert checked.returncode == 0, checked.stderr.decode()
    proxy = subprocess.Popen([nginx, "-p", str(workdir), "-c", str(workdir / "nginx.conf")])
    url = f"https://127.0.0.1:{https_port}"
    wait_until_healthy(url, proxy, seconds=10)
    yield {"url": url, "apps": [u for _, u in apps], "processes": [p for p, _ in apps]}
    proxy.terminate()
    proxy.wait(timeout=10)
    for process, _ in apps:
        if process.poll() is None:
            stop_process(process)


@pytest.fixture
def free_model(fake_upstream):
    """The model 'auto' picks, served by the fake upstream."""
    fake_upstream.reset()
    return AIModel.objects.create(
        slug="test/free", provider=Provider.OPENAI_COMPAT, upstream_id="fake-free", name="Test free", auto_priority=1
    )


def test_a_browser_logs_in_and_chats_through_nginx_over_tls(topology, user, free_model, chromium_path):
    with chromium_page(chromium_path, viewport={"width": 1280, "height": 900}, ignore_https_errors=True) as page:
        page.goto(f"{topology['url']}/accounts/login/")
        page.fill("input[name=login]", user.email)
        page.fill("input[name=password]", PASSWORD)
        page.click("form [type=submit]")
        page.wait_for_url(re.compile(r"/chat/"))
        page.fill("#message-input", "Say hello")
        page.press("#message-input", "Enter")
        reply = page.locator(".message.assistant").last
        reply.locator(".meta-tokens").wait_for(timeout=20_000)
        assert "Hello from the fake upstream." in reply.locator(".content").inner_text()
        assert page.url.startswith(topology["url"])
        assert page.problems == []  # no failed request: static files and the socket came through nginx


def test_an_api_stream_comes_through_nginx_chunk_by_chunk(topology, user, free_model):
    slow = AIModel.objects.create(slug="test/slow", provider=Provider.OPENAI_COMPAT, upstream_id="slow", name="Slow")
    start_subscription(user, Plan.objects.get(slug="enterprise"))
    _, key = issue_key(user, "topology")
    started = time.monotonic()
    arrivals = []
    body = {"model": slow.slug, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with httpx.stream(
        "POST",
        f"{topology['url']}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        verify=False,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic() - started)
            if len(arrivals) == 4:
                break
    # The upstream sends a chunk every 0.2 s for 10 s: buffered by nginx, none would arrive this soon.
    assert arrivals[-1] < 3, arrivals
    # nginx passes the client's hang-up on: the app stops and meters the cut-off stream (and its write
    # is over before the test's teardown empties the tables).
    deadline = time.monotonic() + 15
    while not (usage := list(UsageRecord.objects.filter(user=user))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [u.status for u in usage] == [UsageRecord.Status.STOPPED], usage


def test_logging_out_on_one_process_closes_the_socket_another_process_holds(
    topology, user, free_model, chromium_path, settings
):
    settings.SECRET_KEY = PRODUCTION_SECRET_KEY  # the session is signed as the processes sign theirs
    conversation = Conversation.objects.create(user=user)
    session_key = session_key_for(user)
    holder, other = topology["apps"]
    with chromium_page(
        chromium_path, viewport={"width": 1280, "height": 900}, base_url=holder, session_key=session_key
    ) as page:
        with page.expect_websocket() as opened:
            page.goto(f"{holder}/chat/{conversation.pk}/")
        socket = opened.value
        assert f"/ws/chat/{conversation.pk}/" in socket.url
        # The cookies are Secure (DEBUG=0): sent by hand over this plain-HTTP hop.
        session_cookie = f"{settings.SESSION_COOKIE_NAME}={session_key}"
        csrf = httpx.get(f"{other}/account/", headers={"Cookie": session_cookie}).cookies[settings.CSRF_COOKIE_NAME]
        logout = httpx.post(
            f"{other}/accounts/logout/",
            headers={"Cookie": f"{session_cookie}; {settings.CSRF_COOKIE_NAME}={csrf}", "X-CSRFToken": csrf},
        )
        assert logout.status_code == 302, logout.text[:300]
        socket.wait_for_event("close", timeout=5_000)


def test_when_one_process_is_killed_requests_go_on_through_the_other(topology, user, free_model):
    _, key = issue_key(user, "topology")
    killed = topology["processes"][0]
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    with httpx.Client(base_url=topology["url"], verify=False, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(6):
            assert client.get("/healthz").status_code == 200
            response = client.post(
                "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}
            )
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
