"""Two-factor sign-in (allauth.mfa): set up from the account page, signing in with an authenticator
code or a single-use recovery code, and staff sent to set it up before the admin when required."""

from __future__ import annotations

import time

import pytest
from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.test import AsyncClient, Client

from accounts.models import AuditEntry

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def totp_code(secret: str, margin: float = 8.0) -> str:
    """What an authenticator app shows for this secret (RFC 6238, as allauth checks it), taken with at
    least `margin` seconds of its 30-second window left (else after waiting for the next one), so a slow
    machine still sends it within the window it belongs to."""
    left = mfa_settings.TOTP_PERIOD - time.time() % mfa_settings.TOTP_PERIOD
    if left < margin:
        time.sleep(left + 0.1)
    return format_hotp_value(hotp_value(secret, int(time.time()) // mfa_settings.TOTP_PERIOD))


def sign_in_with_password(client: Client, user):
    return client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})


def set_up_authenticator(user) -> tuple[str, list[str]]:
    """Through the pages, as a person would: the account page's link, the QR code page, a code from
    the app. Returns the secret and the recovery codes shown after."""
    client = Client()
    sign_in_with_password(client, user)
    profile = client.get("/account/").content.decode()
    assert "Two-factor sign-in: off" in profile
    assert 'href="/accounts/2fa/totp/activate/"' in profile
    asked = client.get("/accounts/2fa/totp/activate/")  # the password again first
    assert asked["Location"] == "/accounts/reauthenticate/?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F"
    assert client.post(asked["Location"], {"password": PASSWORD})["Location"] == "/accounts/2fa/totp/activate/"
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    assert 'src="data:image/svg+xml;base64,' in page.content.decode()  # the QR code, no script
    secret = client.session[SECRET_SESSION_KEY]
    response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    codes_page = client.get(response["Location"])
    recovery_codes = list(codes_page.context["unused_codes"])
    assert len(recovery_codes) == 10
    assert "Two-factor sign-in: <strong>on</strong>" in client.get("/account/").content.decode()
    return secret, recovery_codes


def test_without_a_second_factor_the_password_signs_in(client, user):
    assert sign_in_with_password(client, user)["Location"] == "/chat/"


def test_it_signs_in_with_the_password_then_an_authenticator_code(client, user):
    secret, _ = set_up_authenticator(user)
    response = sign_in_with_password(client, user)
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/chat/").status_code == 302  # the password alone is not a sign-in
    page = client.get("/accounts/2fa/authenticate/")
    assert page.status_code == 200 and "authenticator code" in page.content.decode()

    wrong = client.post(
        "/accounts/2fa/authenticate/", {"code": "000000" if totp_code(secret) != "000000" else "111111"}
    )
    assert wrong.status_code == 200
    assert "Incorrect code" in wrong.content.decode()
    assert client.get("/chat/").status_code == 302

    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200


def test_an_authenticator_code_signs_in_once(user):
    secret, _ = set_up_authenticator(user)
    first, second = Client(), Client()
    code = totp_code(secret)
    sign_in_with_password(first, user)
    assert first.post("/accounts/2fa/authenticate/", {"code": code})["Location"] == "/chat/"
    sign_in_with_password(second, user)
    replayed = second.post("/accounts/2fa/authenticate/", {"code": code})
    if totp_code(secret, margin=0) == code:  # still the same 30-second window: the code was used up
        assert replayed.status_code == 200
        assert second.get("/chat/").status_code == 302


def test_a_recovery_code_signs_in_once(user):
    _, recovery_codes = set_up_authenticator(user)
    first = Client()
    sign_in_with_password(first, user)
    assert first.post("/accounts/2fa/authenticate/", {"code": recovery_codes[0]})["Location"] == "/chat/"
    assert first.get("/chat/").status_code == 200

    again = Client()
    sign_in_with_password(again, user)
    refused = again.post("/accounts/2fa/authenticate/", {"code": recovery_codes[0]})
    assert refused.status_code == 200
    assert "Incorrect code" in refused.content.decode()
    assert again.get("/chat/").status_code == 302
    # another of the codes still works
    assert again.post("/accounts/2fa/authenticate/", {"code": recovery_codes[1]})["Location"] == "/chat/"


def test_it_is_optional_and_per_person(user, other_user):
    set_up_authenticator(user)
    assert set(Authenticator.objects.filter(user=user).values_list("type", flat=True)) == {"totp", "recovery_codes"}
    client = Client()
    other_user.set_password(PASSWORD)
    other_user.save()
    assert sign_in_with_password(client, other_user)["Location"] == "/chat/"


def test_turning_it_off_takes_the_second_factor_and_the_password_again(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # allauth tells of a new method after its commit
        secret, _ = set_up_authenticator(user)
    client = Client()
    sign_in_with_password(client, user)
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    asked = client.get("/accounts/2fa/totp/deactivate/")
    assert asked["Location"].startswith("/accounts/reauthenticate/")
    client.post(asked["Location"], {"password": PASSWORD})
    assert client.get("/accounts/2fa/totp/deactivate/").status_code == 200
    client.post("/accounts/2fa/totp/deactivate/")
    assert not Authenticator.objects.filter(user=user, type="totp").exists()
    logged = AuditEntry.objects.filter(actor=user, target_id=str(user.pk)).values_list("action", "detail")
    assert ("two_factor.added", {"type": "totp"}) in logged
    assert ("two_factor.removed", {"type": "totp"}) in logged
    assert sign_in_with_password(Client(), user)["Location"] == "/chat/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("root@example.com", PASSWORD, is_staff=True, is_superuser=True)


@pytest.mark.parametrize("page", ["/admin/", "/admin/accounts/user/", "/ops/"])
def test_staff_without_a_second_factor_are_sent_to_set_it_up_when_required(settings, staff, page):
    settings.REQUIRE_STAFF_MFA = True
    client = Client()
    sign_in_with_password(client, staff)
    response = client.get(page)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/totp/activate/"
    setup = client.get(response["Location"], follow=True)
    assert "Staff pages need two-factor sign-in" in setup.content.decode()
    assert client.get("/chat/").status_code == 200  # the rest of the site as anyone else


def test_staff_with_a_second_factor_reach_the_admin_when_required(settings, staff):
    settings.REQUIRE_STAFF_MFA = True
    secret, _ = set_up_authenticator(staff)
    client = Client()
    sign_in_with_password(client, staff)
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert client.get("/admin/").status_code == 200
    assert client.get("/ops/").status_code == 200


def test_staff_reach_the_admin_without_a_second_factor_when_not_required(settings, staff):
    settings.REQUIRE_STAFF_MFA = False
    client = Client()
    sign_in_with_password(client, staff)
    assert client.get("/admin/").status_code == 200


def test_the_admin_signs_in_through_the_sites_login_with_its_second_factor(client, staff):
    """The admin's own login form would take the password alone."""
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    posted = client.post("/admin/login/?next=/admin/", {"username": staff.email, "password": PASSWORD})
    assert posted.status_code == 302
    assert client.get("/admin/").status_code == 302  # not signed in by the admin's form


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_setting_it_up_in_the_browser_keeps_to_the_layout_and_the_policy(logged_in_page, user):
    """The QR code, the reauthentication and recovery code pages in the site's layout, with no CSP
    violation (the listener fails the test on any)."""
    page = logged_in_page(user)
    page.goto(f"{page.base}/account/")
    page.click("#two-factor a")
    page.fill("input[name=password]", PASSWORD)  # a recent password before changing how one signs in
    page.click("main button[type=submit]")
    page.wait_for_url("**/accounts/2fa/totp/activate/")
    assert page.locator("header.topbar").count() == 1
    assert page.locator("img[src^='data:image/svg+xml']").is_visible()
    secret = page.input_value("#authenticator_secret")
    page.fill("input[name=code]", totp_code(secret))
    page.click("main button[type=submit]")
    page.wait_for_url("**/accounts/2fa/recovery-codes/")
    assert len(page.input_value("#recovery_codes").split()) == 10
    assert page.locator("header.topbar").count() == 1
    assert not page.problems


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_staff_are_sent_to_set_it_up_too(settings, staff):
    """The middleware's async path (what daphne runs), through Django's ASGI handler."""
    settings.REQUIRE_STAFF_MFA = True
    client = AsyncClient()
    await client.aforce_login(staff)
    response = await client.get("/ops/")
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/totp/activate/"
    assert (await client.get("/account/")).status_code == 200
    await Authenticator.objects.acreate(user=staff, type=Authenticator.Type.RECOVERY_CODES, data={"seed": "x"})
    assert (await client.get("/ops/")).status_code == 200
