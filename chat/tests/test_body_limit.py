"""The cap on request bodies at the ASGI edge (aihub/body_limit.py), against daphne serving the real
application: a 200 MB upload is refused before Django writes any of it to a temporary file."""

from __future__ import annotations

import os
import tempfile
import threading

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024


@pytest.fixture
def spooled_to_disk(monkeypatch):
    """How many request bodies Django's ASGI handler spooled past memory onto disk."""
    rolled = []

    class Watched(tempfile.SpooledTemporaryFile):
        def rollover(self):
            if not self._rolled:
                rolled.append(self.tell())
            super().rollover()

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", Watched)
    return rolled


@pytest.fixture
def upload_temp_dir(settings, tmp_path):
    """FILE_UPLOAD_TEMP_DIR, watched while a test runs: every name seen in it."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    seen, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            seen.update(os.listdir(tmp_path))
            done.wait(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield seen
    done.set()
    watcher.join()


def body(size: int):
    chunk = b"x" * MB
    for _ in range(size // MB):
        yield chunk


def test_a_200_mb_upload_is_refused_before_any_temporary_file(asgi_server, spooled_to_disk, upload_temp_dir):
    response = httpx.post(
        f"{asgi_server}/chat/attachments/",
        content=body(200 * MB),
        headers={"Content-Length": str(200 * MB), "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert spooled_to_disk == [] and upload_temp_dir == set()


def test_a_body_under_the_cap_does_reach_django_so_the_watch_sees_spooling(asgi_server, spooled_to_disk):
    response = httpx.post(
        f"{asgi_server}/chat/attachments/",
        content=body(3 * MB),
        headers={"Content-Length": str(3 * MB), "Content-Type": "application/octet-stream"},
    )
    assert response.status_code != 413
    assert len(spooled_to_disk) == 1  # the watch works: this body was spooled past memory


def test_pages_and_the_api_have_their_own_caps(asgi_server, settings):
    page = httpx.post(f"{asgi_server}/accounts/login/", content=b"x" * (settings.PAGE_MAX_BODY_BYTES + 1))
    assert page.status_code == 413
    api = httpx.post(
        f"{asgi_server}/v1/chat/completions",
        content=body(settings.API_MAX_BODY_BYTES + MB),
        headers={"Content-Length": str(settings.API_MAX_BODY_BYTES + MB)},
    )
    assert api.status_code == 413


def test_a_chunked_body_is_cut_off_at_the_cap(asgi_server, settings):
    settings.PAGE_MAX_BODY_BYTES = 2 * MB
    response = httpx.post(f"{asgi_server}/accounts/login/", content=body(8 * MB))  # no Content-Length
    assert response.status_code == 413
