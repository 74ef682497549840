"""A person's own data: the export of all of it, and deleting the account (what goes, what stays for
accounting, and nobody else's data touched)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from asgiref.sync import async_to_sync
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client

from accounts import api_keys
from accounts.models import ApiKey, User
from aihub.testing import logged_in_client
from billing import rollups
from billing.models import EnterpriseInquiry, Invoice, Plan, PlanRequest, SearchRecord, Subscription, UsageRecord
from chat.models import AIModel, Attachment, Conversation, Message, Provider, SharedLink

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
CONFIRM = {"password": PASSWORD, "confirmation": "delete my account"}
PERSONAL = [
    "alice@example.com",
    "Alice",
    "Liddell",
    "Answer like a pirate",
    "alice's secret plans",
    "alice: What is",
    "Wonderland Ltd",
]


@pytest.fixture
def model(db):
    return AIModel.objects.create(slug="fake/m", provider=Provider.OPENAI_COMPAT, upstream_id="m", name="Fake M")


def fill_account(person, model, name: str) -> dict:
    """A conversation with a file and a share link, a key and its usage, a search, an invoice."""
    conversation = Conversation.objects.create(user=person, title=f"{name}'s secret plans", model=model)
    question = Message.objects.create(conversation=conversation, role="user", content=f"{name}: What is 2 + 2?")
    Message.objects.create(conversation=conversation, role="assistant", content="It is **4**.", model=model)
    attachment = Attachment(
        user=person, message=question, name="notes.txt", content_type="text/plain", size=5, kind="document"
    )
    attachment.file.save("notes.txt", SimpleUploadedFile("notes.txt", b"notes"), save=True)
    SharedLink.objects.create(conversation=conversation, token=f"token-{name}", title="shared", snapshot=[])
    api_key, raw_key = api_keys.issue_key(person, f"{name}'s laptop", allowed_models=[model])
    for cost in ("0.25", "0.50"):
        record = UsageRecord.objects.create(
            user=person,
            api_key=api_key,
            model=model,
            model_slug=model.slug,
            provider="openai_compat",
            prompt_tokens=10,
            completion_tokens=20,
            cost=Decimal(cost),
            status="complete",
        )
        rollups.add(record)  # as metering does in the row's transaction
    SearchRecord.objects.create(user=person, backend="searxng", status="complete", results=3)
    Invoice.objects.create(
        user=person,
        stripe_invoice_id=f"in_{name}",
        status="paid",
        amount_due=Decimal("20"),
        amount_paid=Decimal("20"),
        created_at="2026-11-01T00:00:00Z",
    )
    return {"conversation": conversation, "attachment": attachment, "api_key": api_key, "raw_key": raw_key}


@pytest.fixture
def alice(user, model):
    user.first_name, user.last_name = "Alice", "Liddell"
    user.custom_instructions = "Answer like a pirate"
    user.default_model = model
    user.save()
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    Authenticator.objects.create(user=user, type=Authenticator.Type.RECOVERY_CODES, data={"seed": "x"})
    EnterpriseInquiry.objects.create(
        user=user, company="Wonderland Ltd", contact_email=user.email, message="We are many."
    )
    PlanRequest.objects.create(user=user, plan=Plan.objects.get(slug="enterprise"))
    return user, fill_account(user, model, "alice")


@pytest.fixture
def bob(django_user_model, model):
    person = django_user_model.objects.create_user("bob@example.com", PASSWORD)
    return person, fill_account(person, model, "bob")


def everything_in_the_database() -> str:
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows.append(repr(cursor.fetchall()))
    return dump.getvalue() + "\n".join(rows)


def owned_rows(person) -> dict:
    return {
        "conversations": Conversation.objects.filter(user=person).count(),
        "messages": Message.objects.filter(conversation__user=person).count(),
        "attachments": Attachment.objects.filter(user=person).count(),
        "shared_links": SharedLink.objects.filter(conversation__user=person).count(),
        "active_keys": ApiKey.objects.filter(user=person, revoked_at__isnull=True).count(),
        "usage_rows": UsageRecord.objects.filter(user=person).count(),
        "usage_cost": UsageRecord.objects.filter(user=person).totals("cost")["cost"],
        "searches": SearchRecord.objects.filter(user=person).count(),
        "invoices": Invoice.objects.filter(user=person).count(),
    }


def test_deleting_the_account_removes_the_person_and_keeps_the_accounting(alice, bob):
    user, data = alice
    bob_user, bob_data = bob
    bob_before = owned_rows(bob_user)
    stored_file = data["attachment"].file.name
    assert default_storage.exists(stored_file)
    client = Client()
    client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    other_session = logged_in_client(user)  # the same person on another device
    assert other_session.get("/chat/").status_code == 200

    page = client.get("/account/")
    assert b'href="/account/delete/"' in page.content
    assert client.get("/account/delete/").status_code == 200
    response = client.post("/account/delete/", CONFIRM)
    assert response.status_code == 302 and response["Location"] == "/"
    assert "Your account is deleted." in client.get("/").content.decode()

    # Gone: what the person wrote and stored, how they signed in, every session.
    user.refresh_from_db()
    after = owned_rows(user)
    assert after["conversations"] == after["messages"] == after["attachments"] == after["shared_links"] == 0
    assert not default_storage.exists(stored_file)
    assert client.get("/s/token-alice/").status_code == 404
    assert after["active_keys"] == 0
    with pytest.raises(api_keys.KeyRefused):
        async_to_sync(api_keys.authenticate)(data["raw_key"])
    assert not EmailAddress.objects.filter(user=user).exists()
    assert not Authenticator.objects.filter(user=user).exists()
    assert not EnterpriseInquiry.objects.filter(user=user).exists()
    assert PlanRequest.objects.get(user=user).status == PlanRequest.Status.WITHDRAWN
    assert client.get("/chat/").status_code == 302
    assert other_session.get("/chat/").status_code == 302  # signed out on the other device too
    assert Client().post("/accounts/login/", {"login": "alice@example.com", "password": PASSWORD}).status_code == 200
    assert not user.is_active and not user.has_usable_password() and user.deleted_at is not None
    assert user.email == f"deleted-{user.pk}@deleted.invalid"
    everything = everything_in_the_database()
    for personal in PERSONAL:
        assert personal not in everything, personal

    # Kept, on the anonymous row: usage with its cost, searches, invoices, plan history; the plan ends.
    assert after["usage_rows"] == 2 and after["usage_cost"] == Decimal("0.75")
    assert UsageRecord.objects.filter(api_key=data["api_key"]).count() == 2  # still per key
    assert rollups.usage(user=user).totals("requests", "cost") == {"requests": 2, "cost": Decimal("0.75")}
    assert after["searches"] == 1 and after["invoices"] == 1
    subscription = Subscription.objects.get(user=user, is_active=True)
    assert subscription.plan.slug == "pro" and subscription.scheduled_plan.slug == "free"

    # Nobody else's data is touched; the address may sign up again as a new person.
    assert owned_rows(bob_user) == bob_before
    assert default_storage.exists(bob_data["attachment"].file.name)
    assert async_to_sync(api_keys.authenticate)(bob_data["raw_key"]).user == bob_user
    signup = Client().post(
        "/accounts/signup/",
        {"email": "alice@example.com", "password1": "a new passphrase 2026", "password2": "a new passphrase 2026"},
    )
    assert signup.status_code == 302
    assert User.objects.get(email="alice@example.com").pk != user.pk


@pytest.mark.parametrize(
    "data, field",
    [
        ({"password": "wrong password", "confirmation": "delete my account"}, "password"),
        ({"password": PASSWORD, "confirmation": "yes"}, "confirmation"),
        ({"password": PASSWORD}, "confirmation"),
    ],
)
def test_it_deletes_nothing_without_the_password_and_the_confirmation(alice, data, field):
    user, _ = alice
    client = logged_in_client(user)
    response = client.post("/account/delete/", data)
    assert response.status_code == 422
    assert response.context["form"].errors[field]
    user.refresh_from_db()
    assert user.is_active and user.email == "alice@example.com"
    assert Conversation.objects.filter(user=user).exists()


def test_deleting_takes_a_post_with_the_csrf_token(alice):
    user, _ = alice
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/account/delete/", CONFIRM).status_code == 403
    user.refresh_from_db()
    assert user.is_active


def test_deletion_and_export_need_a_login(client):
    for url in ("/account/delete/", "/account/export.zip"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_export_holds_everything_of_the_person_and_nothing_of_anyone_else(alice, bob):
    user, data = alice
    response = logged_in_client(user).get("/account/export.zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="aihub-account-')
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    everything = b"".join(archive.read(name) for name in names).decode()

    account = json.loads(archive.read("account.json"))
    assert account["format"] == "aihub.account-export.v1"
    assert account["profile"]["email"] == "alice@example.com"
    assert account["profile"]["custom_instructions"] == "Answer like a pirate"
    assert account["profile"]["default_model"] == "fake/m"
    assert account["email_addresses"] == [{"email": "alice@example.com", "verified": True, "primary": True}]
    assert account["two_factor"] == ["recovery_codes"]
    [key] = account["api_keys"]
    assert key["name"] == "alice's laptop" and key["status"] == "active" and key["allowed_models"] == ["fake/m"]
    assert data["raw_key"] not in everything and data["api_key"].hashed_key not in everything
    assert data["raw_key"][len(api_keys.KEY_PREFIX) + 8 :] not in everything  # nothing past the shown prefix

    billing = json.loads(archive.read("billing.json"))
    assert [s["plan"] for s in billing["subscriptions"]] == ["Pro", "Free"]
    assert billing["invoices"][0]["amount_paid"] == "20.00"
    [month] = billing["usage_by_month"]
    assert month["requests"] == 2 and month["tokens"] == 60 and Decimal(month["cost"]) == Decimal("0.75")
    usage = list(csv.DictReader(io.StringIO(archive.read("usage.csv").decode())))
    assert len(usage) == 1 and usage[0]["requests"] == "2" and usage[0]["api_key"].startswith("alice's laptop")

    [conversation_json] = [n for n in names if n.startswith("conversations/json/")]
    record = json.loads(archive.read(conversation_json))
    assert record["title"] == "alice's secret plans"
    assert [m["content"] for m in record["messages"]] == ["alice: What is 2 + 2?", "It is **4**."]
    assert record["messages"][0]["attachments"][0]["name"] == "notes.txt"
    assert any(n.startswith("conversations/markdown/") for n in names)

    assert "bob" not in everything  # another person's conversation, key and usage are not in it


def test_operators_delete_accounts_with_the_same_erasure_never_the_row(alice, admin_client):
    user, _ = alice
    assert admin_client.get(f"/admin/accounts/user/{user.pk}/delete/").status_code == 403
    response = admin_client.post(
        "/admin/accounts/user/", {"action": "delete_accounts", "_selected_action": [user.pk]}, follow=True
    )
    assert "anonymous tombstones" in response.content.decode()
    user.refresh_from_db()
    assert user.deleted_at is not None and not user.is_active
    assert not Conversation.objects.filter(user=user).exists()
    assert UsageRecord.objects.filter(user=user).count() == 2


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_deleting_in_the_browser_from_the_account_page(logged_in_page, user):
    page = logged_in_page(user)
    page.goto(f"{page.base}/account/")
    page.click("#delete-account-link")
    page.wait_for_url("**/account/delete/")
    page.fill("input[name=password]", "not my password")
    page.fill("input[name=confirmation]", "delete my account")
    page.click("#delete-account button[type=submit]")
    assert page.locator("text=That is not your password.").is_visible()  # refused, nothing deleted
    page.problems.clear()  # the refusal's 422 is expected
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirmation]", "delete my account")
    page.click("#delete-account button[type=submit]")
    page.wait_for_url(f"{page.base}/")
    assert page.locator("text=Your account is deleted.").is_visible()
    assert page.locator("a[href='/accounts/login/']").count() >= 1  # signed out
    assert not page.problems
