"""CI's container checks of the production image, run as a user would run it: two replicas started at
once on a fresh PostgreSQL database (they migrate under a lock) and Redis, with the host's network,
DEBUG=0; then readiness, Docker's health check, a page and its static files, a chat completion against
the fake upstream, the local model, the non-root user, no compilers, a clean stop.

Usage: python .ci/check_image.py IMAGE   (DATABASE_URL and REDIS_URL: the servers to use)"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import psycopg

IMAGE = sys.argv[1]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://aihub:aihub@127.0.0.1:5432/aihub")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
HELLO = [{"role": "user", "content": "Say hello"}]


def log(message: str) -> None:
    print(f"  {message}", flush=True)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_database() -> str:
    url = urlsplit(DATABASE_URL)
    name = f"{url.path.lstrip('/')}_image_check"
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return url._replace(path=f"/{name}").geturl()


def wait_for(what: str, check, seconds: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise SystemExit(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.5)
    took = time.monotonic() - started
    log(f"{what}: {took:.1f} s")
    return took


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def main() -> None:
    database_url = fresh_database()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "chat.tests.fake_upstream"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    upstream_url = upstream.stdout.readline().strip()
    names, ports = ["aihub-ci-1", "aihub-ci-2"], [free_port(), free_port()]
    settings = {
        "ENVIRONMENT": "production",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "OPENAI_COMPAT_BASE_URL": f"{upstream_url}/v1",
    }
    try:
        for name in names:
            run("docker", "rm", "-f", name, check=False)
        for name, port, extra in zip(names, ports, [[], ["--read-only", "--tmpfs", "/tmp"]], strict=True):
            environment = [
                arg for key, value in {**settings, "PORT": str(port)}.items() for arg in ("-e", f"{key}={value}")
            ]
            run("docker", "run", "-d", "--name", name, "--network", "host", *extra, *environment, IMAGE)
        log("two replicas started at once on an empty database (the second with a read-only root)")
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for name, url in zip(names, urls, strict=True):
            try:
                wait_for(f"{name} /readyz", lambda url=url: answers(f"{url}/readyz"), 300)
            except SystemExit:
                print(run("docker", "logs", name, check=False).stderr[-3000:])
                raise
        wait_for(
            "Docker's HEALTHCHECK says healthy",
            lambda: all(
                run("docker", "inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() == "healthy"
                for name in names
            ),
            90,
        )

        page = httpx.get(f"{urls[0]}/accounts/login/")
        assert page.status_code == 200, page.status_code
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert assets and all(httpx.get(urls[0] + a).status_code == 200 for a in assets), assets
        log(f"login page with DEBUG=0 and its {len(assets)} static files (hashed names): 200")

        run("docker", "exec", names[0], "python", "manage.py", "seed", "--demo")
        key = run("docker", "exec", names[0], "python", "manage.py", "create_api_key", "--email", "demo@aihub.local")
        headers = {"Authorization": f"Bearer {key.stdout.strip().splitlines()[-1]}"}
        reply = httpx.post(
            f"{urls[1]}/v1/chat/completions",
            headers=headers,
            json={"model": "compat/fake-model", "messages": HELLO},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream.", reply.text
        log("chat completion through the other replica against the fake upstream: 200")
        started = time.monotonic()
        local = httpx.post(
            f"{urls[0]}/v1/chat/completions",
            headers=headers,
            json={"model": "local/smollm2-135m-instruct", "messages": HELLO, "max_tokens": 8},
            timeout=120,
        )
        assert local.status_code == 200 and local.json()["choices"][0]["message"]["content"], local.text
        log(f"the local model (llama-cpp built in the image) answered in {time.monotonic() - started:.1f} s")

        user = run("docker", "exec", names[0], "id", "-u").stdout.strip()
        assert user == "10001", user
        compilers = run(
            "docker", "run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "command -v gcc cc c++ cmake", check=False
        )
        assert compilers.stdout.strip() == "", compilers.stdout
        log("runs as uid 10001; no gcc, cc, c++ or cmake in the image")

        started = time.monotonic()
        run("docker", "stop", "-t", "30", names[0])
        code = run("docker", "inspect", "-f", "{{.State.ExitCode}}", names[0]).stdout.strip()
        log(f"docker stop (SIGTERM): exit code {code} after {time.monotonic() - started:.1f} s")
        assert code in ("0", "143"), code
        assert answers(f"{urls[1]}/readyz"), "the other replica stopped answering"
    finally:
        for name in names:
            run("docker", "rm", "-f", name, check=False)
        upstream.terminate()


if __name__ == "__main__":
    main()
