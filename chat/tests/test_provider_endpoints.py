"""Providers added in the admin: any number of OpenAI-compatible servers (or OpenRouter, Gemini
accounts) under their own names, keys encrypted at rest with Fernet, models imported from their list,
serving chats next to the providers set in the environment."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.test import Client

from accounts.api_keys import issue_key
from aihub.testing import logged_in_client
from billing.models import Plan
from billing.subscriptions import start_subscription
from chat.catalogue.models import AIModel, ProviderEndpoint

pytestmark = pytest.mark.django_db

KEY = "lab-secret-key-0123"


@pytest.fixture
def admin_client(django_user_model):
    return logged_in_client(django_user_model.objects.create_superuser("root@example.com", "correct horse battery"))


@pytest.fixture
def keys_secret(settings):
    settings.PROVIDER_KEYS_SECRET = Fernet.generate_key().decode()
    return settings.PROVIDER_KEYS_SECRET


def add_endpoint(admin_client, upstream, **fields):
    form = {"name": "lab", "kind": "openai_compat", "base_url": f"{upstream.url}/v1", "is_active": "on", "api_key": KEY}
    return admin_client.post("/admin/chat/providerendpoint/add/", {**form, **fields})


@pytest.mark.django_db(transaction=True)
def test_an_admin_added_provider_serves_a_chat_with_its_encrypted_key(admin_client, upstream, keys_secret, user):
    assert add_endpoint(admin_client, upstream).status_code == 302
    endpoint = ProviderEndpoint.objects.get(name="lab")
    assert KEY not in endpoint.api_key_encrypted and endpoint.api_key_encrypted.startswith("gAAAA")
    assert Fernet(keys_secret).decrypt(endpoint.api_key_encrypted.encode()).decode() == KEY

    imported = admin_client.post(
        "/admin/chat/providerendpoint/", {"action": "import_models", "_selected_action": [endpoint.pk]}, follow=True
    )
    assert "Lab: 2 models imported as lab/..." in imported.content.decode()  # the admin capitalises
    model = AIModel.objects.get(slug="lab/fake-model")
    assert (model.provider, model.upstream_id) == ("lab", "fake-model")

    start_subscription(user, Plan.objects.get(slug="enterprise"))
    _, raw_key = issue_key(user, "lab")
    api = Client(headers={"Authorization": f"Bearer {raw_key}"})
    listed = [m["id"] for m in api.get("/v1/models").json()["data"]]
    assert "lab/fake-model" in listed
    upstream.reset()
    response = api.post(
        "/v1/chat/completions",
        {"model": "lab/fake-model", "messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"


def test_the_key_is_never_shown_back(admin_client, upstream, keys_secret):
    add_endpoint(admin_client, upstream)
    endpoint = ProviderEndpoint.objects.get(name="lab")
    page = admin_client.get(f"/admin/chat/providerendpoint/{endpoint.pk}/change/").content.decode()
    assert KEY not in page and endpoint.api_key_encrypted not in page
    # Saving without a new key keeps the stored one.
    form = {"name": "lab", "kind": "openai_compat", "base_url": f"{upstream.url}/v2", "is_active": "on"}
    assert admin_client.post(f"/admin/chat/providerendpoint/{endpoint.pk}/change/", form).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.api_key == KEY and endpoint.base_url.endswith("/v2")


def test_without_provider_keys_secret_a_key_is_refused_with_what_to_do(admin_client, upstream, settings):
    settings.PROVIDER_KEYS_SECRET = ""
    response = add_endpoint(admin_client, upstream)
    assert response.status_code == 200
    assert "Set PROVIDER_KEYS_SECRET" in response.content.decode()
    assert not ProviderEndpoint.objects.exists()


def test_a_name_of_an_environment_provider_is_refused(admin_client, upstream, keys_secret):
    response = add_endpoint(admin_client, upstream, name="openrouter")
    assert "belongs to a provider set in the environment" in response.content.decode()
