"""The Content-Security-Policy of the pages: on every page, and enforced by the browser."""

from __future__ import annotations

import pytest
from django.test import Client

from aihub.testing import logged_in_client

STRICT = "script-src 'self'"
PAGES = [
    "/",
    "/accounts/login/",
    "/accounts/signup/",
    "/chat/",
    "/usage/",
    "/billing/",
    "/billing/statements/",
    "/account/",
    "/account/api-keys/",
    "/accounts/2fa/",
    "/account/delete/",
    "/api/guide",
    "/ops/",
    "/admin/",
    "/chat/99999/",  # an error page too
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_strict_policy(django_user_model, path):
    staff = django_user_model.objects.create_superuser("boss@example.com", "correct horse battery")
    response = logged_in_client(staff).get(path)
    assert response.status_code in (200, 302, 404), path
    policy = response["Content-Security-Policy"]
    assert STRICT in policy and "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy


@pytest.mark.django_db
def test_the_api_reference_has_its_own_documented_policy():
    policy = Client().get("/api/docs")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "worker-src 'self' blob:" in policy


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_browser_refuses_an_inline_script_and_the_listener_sees_it(logged_in_page, user):
    page = logged_in_page(user)
    page.goto(f"{page.base}/usage/")
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "document.body.dataset.injected = 'ran'";
            document.body.append(script);
        }"""
    )
    page.wait_for_function("() => true")
    assert page.evaluate("() => document.body.dataset.injected") is None  # refused: it never ran
    page.wait_for_timeout(200)  # the violation event is delivered asynchronously
    assert [v["directive"] for v in page.csp_violations] == ["script-src-elem"]
    page.expect_csp_violation = lambda v: v["directive"] == "script-src-elem"  # the one provoked here
