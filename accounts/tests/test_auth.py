"""Signing up, logging in and out, resetting a password; which pages need a login."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.mark.parametrize("url", ["/", "/healthz", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"])
def test_it_serves_public_pages_to_anonymous_visitors(client, url):
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("url", ["/chat/", "/chat/new/", "/account/", "/chat/conversations/?q=x"])
def test_every_other_page_needs_a_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_it_signs_up_with_an_email_address(client):
    response = client.post(
        "/accounts/signup/",
        {
            "email": "new@example.com",
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
        },
    )
    assert response.status_code == 302
    user = get_user_model().objects.get(email="new@example.com")
    assert client.get("/account/").context["user"] == user
    assert user.subscriptions.get(is_active=True).plan.slug == "free"


def test_it_refuses_a_duplicate_email(client, user):
    response = client.post(
        "/accounts/signup/",
        {
            "email": user.email,
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
        },
    )
    assert response.status_code == 200
    assert "already registered" in response.content.decode()


def test_it_logs_in_with_email_and_password(client, user):
    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200


def test_it_refuses_a_wrong_password(client, user):
    response = client.post("/accounts/login/", {"login": user.email, "password": "wrong"})
    assert response.status_code == 200
    assert "not correct" in response.content.decode()
    assert client.get("/chat/").status_code == 302


def test_it_logs_out(client, user):
    client.force_login(user)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/chat/").status_code == 302


def test_the_page_header_offers_logout_as_a_post_form(client, user):
    client.force_login(user)
    html = client.get("/account/").content.decode()
    assert re.search(r'<form method="post" action="/accounts/logout/"', html)


def test_it_resets_a_forgotten_password(client, user, mailoutbox):
    response = client.post("/accounts/password/reset/", {"email": user.email})
    assert response.status_code == 302
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [user.email]
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", mailoutbox[0].body).group(1)

    response = client.get(link)  # allauth moves the key out of the URL into the session
    assert response.status_code == 302
    form_url = response["Location"]
    assert client.get(form_url).status_code == 200
    response = client.post(form_url, {"password1": "a brand new passphrase", "password2": "a brand new passphrase"})
    assert response.status_code == 302

    user.refresh_from_db()
    assert user.check_password("a brand new passphrase")
    assert not user.check_password(PASSWORD)
    response = client.post("/accounts/login/", {"login": user.email, "password": "a brand new passphrase"})
    assert response["Location"] == "/chat/"


def test_a_used_reset_link_does_not_work_twice(client, user, mailoutbox):
    client.post("/accounts/password/reset/", {"email": user.email})
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", mailoutbox[0].body).group(1)
    form_url = client.get(link)["Location"]
    client.post(form_url, {"password1": "a brand new passphrase", "password2": "a brand new passphrase"})
    client.logout()
    response = client.get(link, follow=True)
    assert "password reset link was invalid" in response.content.decode()


def test_a_reset_for_an_unknown_address_sends_no_reset_link(client, mailoutbox):
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert not any("/accounts/password/reset/key/" in m.body for m in mailoutbox)
