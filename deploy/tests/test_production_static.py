"""DEBUG=0 as production runs it: collectstatic with the manifest storage, then the production server
(`manage.py serve`) serving pages whose static files (hashed names, compressed) load."""

from __future__ import annotations

import os
import re

import httpx
import pytest
from django.conf import settings

from aihub.testing import start_server, stop_process, wait_until_healthy

from .conftest import production_settings


@pytest.fixture(scope="module")
def production_env(collected_static, tmp_path_factory):
    # Pages below need no table: a database nobody migrated proves it.
    database = tmp_path_factory.mktemp("unmigrated") / "db.sqlite3"
    return {
        **os.environ,
        **production_settings(collected_static),
        "DATABASE_URL": f"sqlite:///{database}",
        "REDIS_URL": "",
    }


@pytest.fixture(scope="module")
def production_server(production_env):
    process, url = start_server(production_env)
    try:
        wait_until_healthy(url, process)
        yield url
    finally:
        stop_process(process)


@pytest.mark.parametrize("page", ["/", "/accounts/login/", "/api/docs", "/api/guide"])
def test_pages_and_their_static_files_load_with_debug_off(production_server, page):
    response = httpx.get(production_server + page)
    assert response.status_code == 200, response.text[:500]
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', response.text)
    assert assets, "the page links no static file"
    for asset in assets:
        # The manifest's hashed names (name.0123456789ab.ext), served for a year.
        assert re.search(r"\.[0-9a-f]{12}\.", asset), asset
        served = httpx.get(production_server + asset, headers={"Accept-Encoding": "gzip"})
        assert served.status_code == 200, asset
        assert "immutable" in served.headers["Cache-Control"], asset


def test_vendored_scripts_name_no_missing_source_map():
    """The manifest storage rewrites `//# sourceMappingURL=` lines and fails on a map file that is not
    shipped; a vendored file keeping one breaks collectstatic (and so the image build)."""
    for script in (settings.BASE_DIR / "static").rglob("*.js"):
        for target in re.findall(r"(?m)^//# sourceMappingURL=(\S+)$", script.read_text(errors="replace")):
            assert (script.parent / target).exists(), f"{script.name} names a missing {target}"
