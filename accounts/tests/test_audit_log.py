"""The audit log: each action it covers leaves one entry (who, what, to what), through the real pages,
admin actions and webhooks; the admin shows it and nobody can edit it."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts.models import ApiKey, AuditEntry
from aihub.testing import logged_in_client
from billing.models import Plan, PlanRequest
from billing.stripe_api import sign
from billing.subscriptions import current_subscription, start_subscription

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
Action = AuditEntry.Action


@pytest.fixture
def operator_user(django_user_model):
    return django_user_model.objects.create_superuser("ops@example.com", PASSWORD)


@pytest.fixture
def operator(operator_user):
    return logged_in_client(operator_user)


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).select_related("actor").order_by("id"))


def test_issuing_and_revoking_a_key_on_the_page_are_logged(free_user):
    client = logged_in_client(free_user)
    client.post("/account/api-keys/", {"name": "CI"})
    key = ApiKey.objects.get(user=free_user)
    [issued] = entries(Action.KEY_ISSUED)
    assert issued.actor == free_user
    assert (issued.target_type, issued.target_id) == ("accounts.apikey", str(key.pk))
    assert issued.target_repr == str(key) and issued.detail == {"owner_id": free_user.pk}
    client.post(f"/account/api-keys/{key.pk}/revoke/")
    client.post(f"/account/api-keys/{key.pk}/revoke/")  # already revoked: nothing more to log
    [revoked] = entries(Action.KEY_REVOKED)
    assert revoked.actor == free_user and revoked.target_id == str(key.pk)


def test_a_revocation_by_an_operator_names_the_operator(free_user, operator, operator_user):
    client = logged_in_client(free_user)
    client.post("/account/api-keys/", {"name": "one"})
    client.post("/account/api-keys/", {"name": "two"})
    keys = list(ApiKey.objects.filter(user=free_user))
    operator.post("/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": [k.pk for k in keys]})
    revoked = entries(Action.KEY_REVOKED)
    assert {e.target_id for e in revoked} == {str(k.pk) for k in keys}
    assert {e.actor for e in revoked} == {operator_user}


def test_a_plan_request_its_approval_and_the_plan_change_are_logged(free_user, operator, operator_user):
    logged_in_client(free_user).post("/billing/request/pro/")
    plan_request = PlanRequest.objects.get(user=free_user)
    [requested] = entries(Action.PLAN_REQUESTED)
    assert requested.actor == free_user and requested.detail == {"from": "free", "to": "pro"}
    operator.post("/admin/billing/planrequest/", {"action": "approve", "_selected_action": [plan_request.pk]})
    [approved] = entries(Action.PLAN_REQUEST_APPROVED)
    assert approved.actor == operator_user and approved.target_id == str(plan_request.pk)
    [changed] = entries(Action.PLAN_CHANGED)
    assert changed.actor == operator_user
    assert (changed.target_type, changed.target_id) == ("accounts.user", str(free_user.pk))
    assert changed.detail == {"from": "free", "to": "pro", "reason": "request approved"}


def test_a_declined_request_is_logged_without_a_plan_change(free_user, operator, operator_user):
    logged_in_client(free_user).post("/billing/request/pro/")
    plan_request = PlanRequest.objects.get(user=free_user)
    operator.post("/admin/billing/planrequest/", {"action": "decline", "_selected_action": [plan_request.pk]})
    assert [e.actor for e in entries(Action.PLAN_REQUEST_DECLINED)] == [operator_user]
    assert entries(Action.PLAN_CHANGED) == []


def test_self_service_changes_and_scheduled_downgrades_are_logged(settings, free_user):
    settings.BILLING_SELF_SERVICE_UPGRADES = True
    client = logged_in_client(free_user)
    client.post("/billing/change/pro/")
    [upgrade] = entries(Action.PLAN_CHANGED)
    assert upgrade.actor == free_user and upgrade.detail["to"] == "pro" and upgrade.detail["reason"] == "upgrade"
    client.post("/billing/change/developer/")
    [scheduled] = entries(Action.PLAN_CHANGE_SCHEDULED)
    assert scheduled.actor == free_user and (scheduled.detail["from"], scheduled.detail["to"]) == ("pro", "developer")
    client.post("/billing/keep/")
    [dropped] = entries(Action.PLAN_CHANGE_DROPPED)
    assert dropped.detail == {"kept": "pro", "dropped": "developer"}
    assert current_subscription(free_user).scheduled_plan is None


def test_an_operators_move_in_the_admin_is_logged(free_user, operator, operator_user):
    subscription = current_subscription(free_user)
    operator.post(
        "/admin/billing/subscription/", {"action": "move_to_developer", "_selected_action": [subscription.pk]}
    )
    [changed] = entries(Action.PLAN_CHANGED)
    assert changed.actor == operator_user and changed.detail["reason"] == "moved in the admin"


def test_a_plan_started_by_stripe_is_logged_as_the_systems(settings, free_user):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = "sk_test_x", "whsec_test"
    event = {
        "id": "evt_1",
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": "cs_1",
                "mode": "subscription",
                "payment_status": "paid",
                "customer": "cus_1",
                "subscription": "sub_1",
                "client_reference_id": str(free_user.pk),
                "metadata": {"user_id": str(free_user.pk), "plan": "pro"},
            }
        },
    }
    payload = json.dumps(event).encode()
    response = Client().post(
        "/billing/stripe/webhook/",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(payload, "whsec_test"),
    )
    assert response.status_code == 200
    [changed] = entries(Action.PLAN_CHANGED)
    assert changed.actor is None and changed.detail["to"] == "pro" and changed.detail["reason"].startswith("Stripe")


def test_the_first_free_plan_of_a_new_account_is_not_a_change(free_user):
    assert current_subscription(free_user).plan.slug == "free"
    assert entries(Action.PLAN_CHANGED) == []


def test_staff_sign_ins_are_logged_and_other_sign_ins_are_not(free_user, operator_user):
    Client().post("/accounts/login/", {"login": free_user.email, "password": PASSWORD})
    assert entries(Action.STAFF_SIGNED_IN) == []
    Client(REMOTE_ADDR="10.1.2.3").post("/accounts/login/", {"login": operator_user.email, "password": PASSWORD})
    [signed_in] = entries(Action.STAFF_SIGNED_IN)
    assert signed_in.actor == operator_user and signed_in.detail == {"ip": "10.1.2.3"}


def test_admin_edits_are_logged(operator, operator_user):
    plan = Plan.objects.get(slug="developer")
    page = operator.get(f"/admin/billing/plan/{plan.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data["requests_per_minute"] = 77
    response = operator.post(f"/admin/billing/plan/{plan.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    [edit] = entries(Action.ADMIN_CHANGED)
    assert edit.actor == operator_user
    assert (edit.target_type, edit.target_id, edit.target_repr) == ("billing.plan", str(plan.pk), "Developer")
    assert "Requests per minute" in edit.detail["message"]


def test_a_deleted_account_is_logged_and_its_entries_no_longer_name_the_person(free_user, settings):
    settings.BILLING_SELF_SERVICE_UPGRADES = True
    client = logged_in_client(free_user)
    client.post("/billing/change/pro/")
    client.post("/account/delete/", {"password": PASSWORD, "confirmation": "delete my account"})
    [deleted] = entries(Action.ACCOUNT_DELETED)
    free_user.refresh_from_db()
    assert deleted.actor == free_user and deleted.target_id == str(free_user.pk)
    assert not AuditEntry.objects.filter(target_repr__contains="fran@example.com").exists()
    assert AuditEntry.objects.filter(action=Action.PLAN_CHANGED, target_id=str(free_user.pk)).exists()  # kept


def test_the_admin_shows_the_log_and_nobody_can_change_it(free_user, operator):
    start_subscription(free_user, Plan.objects.get(slug="pro"), reason="test")
    entry = AuditEntry.objects.get(action=Action.PLAN_CHANGED)
    listing = operator.get("/admin/accounts/auditentry/").content.decode()
    assert "plan changed" in listing and "fran@example.com" in listing
    assert operator.get("/admin/accounts/auditentry/add/").status_code == 403
    assert operator.get(f"/admin/accounts/auditentry/{entry.pk}/delete/").status_code == 403
    view = operator.get(f"/admin/accounts/auditentry/{entry.pk}/change/")
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    operator.post(f"/admin/accounts/auditentry/{entry.pk}/change/", {"action": "api_key.issued"})
    entry.refresh_from_db()
    assert entry.action == Action.PLAN_CHANGED
    assert operator.get("/admin/admin/logentry/").status_code == 200
