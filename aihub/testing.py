"""Helpers for the tests of every app: a free port, daphne or the production server in a process of its own,
logged-in clients and session cookies, headless Chromium pages, the seeded plans. Fixtures built on them
live in the root conftest.py."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO

import httpx
from django.apps import apps
from django.conf import settings
from django.db.migrations import RunPython
from django.db.migrations.loader import MigrationLoader
from django.test import Client

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => window.__aihubCspViolation({
  directive: event.effectiveDirective, blocked: event.blockedURI, page: event.documentURI,
  source: `${event.sourceFile}:${event.lineNumber}`, sample: event.sample,
}));
"""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_daphne(env: dict[str, str], log: IO | int = subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """Start daphne (the development server: `make run`; it stops at once on SIGTERM) serving aihub.asgi
    on a free port in a process of its own with this environment; return the process and its base URL
    (wait for it with wait_until_healthy)."""
    return _serve(["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "aihub.asgi:application"], env, log)


def start_server(
    env: dict[str, str], log: IO | int = subprocess.DEVNULL, drain: float = 5
) -> tuple[subprocess.Popen, str]:
    """start_daphne with the production server instead: `manage.py serve` (uvicorn; at SIGTERM it drains
    open requests for up to `drain` seconds)."""
    return _serve(["manage.py", "serve", "--port", "{port}", "--drain", str(drain)], env, log)


def _serve(arguments: list[str], env: dict[str, str], log: IO | int) -> tuple[subprocess.Popen, str]:
    port = str(free_port())
    process = subprocess.Popen(
        [sys.executable, *(port if argument == "{port}" else argument for argument in arguments)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    """Whether `predicate()` came true within `seconds` (what a server does after its response, say)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def wait_until_healthy(
    url: str, process: subprocess.Popen | None = None, seconds: float = 30, path: str = "/healthz"
) -> None:
    """Wait until GET {url}{path} answers 200; fail when the process has exited or after `seconds`.
    (Certificates are not checked: test servers make their own.)"""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}{path}", timeout=1, verify=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process is None or process.poll() is None, f"the server at {url} exited"
        assert time.monotonic() < deadline, f"the server at {url} did not start"
        time.sleep(0.1)


def app_env(upstream_url: str | None = None, **overrides: str) -> dict[str, str]:
    """The environment of an app process (start_daphne) on the test database, the local model off, the
    fake upstream at `upstream_url` as the OpenAI-compatible provider; `overrides` on top."""
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DEBUG": "1",
        "LOCAL_MODEL_ENABLED": "0",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "OPENROUTER_API_KEY": "",
        "GEMINI_API_KEY": "",
        "LOG_LEVEL": "WARNING",
    }
    if upstream_url:
        env["OPENAI_COMPAT_BASE_URL"] = f"{upstream_url}/v1"
    return {**env, **overrides}


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


@functools.cache
def plan_seeds() -> tuple[Callable, ...]:
    """The billing migrations' data steps that seed the plans (RunPython functions named seed_*), in
    migration order: the one place the plans are defined."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    (leaf,) = graph.leaf_nodes("billing")
    return tuple(
        operation.code
        for app_label, name in graph.forwards_plan(leaf)
        if app_label == "billing"
        for operation in graph.nodes[app_label, name].operations
        if isinstance(operation, RunPython) and operation.code.__name__.startswith("seed_")
    )


def seed_plans() -> None:
    """The seeded plans, made again by the migrations' own functions (against today's models) when a
    transactional test's flush took them."""
    from billing.models import Plan

    if not Plan.objects.exists():
        for seed in plan_seeds():
            seed(apps, None)


def logged_in_client(person) -> Client:
    client = Client()
    client.force_login(person)
    return client


def session_key_for(person) -> str:
    """The value of a session cookie logged in as this person (made with the ORM: call it before
    Playwright's event loop runs in the thread)."""
    return logged_in_client(person).cookies[settings.SESSION_COOKIE_NAME].value


def session_cookie_header(person) -> bytes:
    """A Cookie header value carrying a session logged in as this person."""
    return f"{settings.SESSION_COOKIE_NAME}={session_key_for(person)}".encode()


def send_json(handler: BaseHTTPRequestHandler, status: int, payload) -> None:
    """Answer a request of a stand-in HTTP server (http.server) with this JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def chromium_page(
    executable_path: str,
    *,
    viewport: dict[str, int],
    base_url: str | None = None,
    session_key: str | None = None,
    permissions: tuple[str, ...] = (),
    ignore_https_errors: bool = False,
) -> Iterator:
    """A page of headless Chromium that collects its problems (console errors, page errors, responses
    of 4xx/5xx) in `page.problems`; with a session key it is logged in on base_url (`page.base`).
    ignore_https_errors: for a server with a self-signed certificate."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable_path, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=viewport, ignore_https_errors=ignore_https_errors)
        if permissions:
            context.grant_permissions(list(permissions), origin=base_url)
        if session_key:
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_key, "url": base_url}])
        # Every Content-Security-Policy violation of every page is collected (the listener is added
        # before the page's own scripts run) and fails the test at the end, unless the test expects
        # it: set page.expect_csp_violation to a predicate over the violation.
        page_violations: list[dict] = []
        context.expose_binding("__aihubCspViolation", lambda source, violation: page_violations.append(violation))
        context.add_init_script(CSP_LISTENER)
        page = context.new_page()
        page.csp_violations = page_violations
        page.expect_csp_violation = lambda violation: False
        page.problems = []
        page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
        page.on("response", lambda r: r.status >= 400 and page.problems.append(f"{r.status} {r.url}"))
        page.base = base_url
        yield page
        browser.close()
        unexpected = [v for v in page.csp_violations if not page.expect_csp_violation(v)]
        assert not unexpected, f"Content-Security-Policy violations: {unexpected}"
