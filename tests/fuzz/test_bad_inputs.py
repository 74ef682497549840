"""Bad input at every edge, as a table: each input and the status it must get (never a 500).

Each row is one input that once crashed the app (or one of its close relatives): deep nesting,
lone surrogates, digits that are not ASCII, dates at the end of the calendar, numbers too large
for the database, values of the wrong type, signed webhooks of the wrong shape. Socket frames get
a visible error and the socket stays open."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.api_keys import issue_key
from aihub.asgi import application
from aihub.testing import logged_in_client, session_cookie_header
from billing import rollups, stripe_api
from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat.models import Conversation, Message
from chat.tests.api_fixtures import KeyClient, catalogue, issued  # noqa: F401

# The tables run in rolled-back transactions (the sync test client runs async views in this thread's
# connection); the sockets and the API requests that go on to the gateway's database_sync_to_async (it
# closes the connection: on PostgreSQL, not inside a test's transaction) need real commits.
pytestmark = pytest.mark.django_db
committed = pytest.mark.django_db(transaction=True)

V1 = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]
WEBHOOK_SECRET = "whsec_fuzz"


@pytest.fixture
def key_client(issued):
    """A sync test client sending the API key of `issued`."""

    def call(method: str, path: str, body=None):
        data = body if isinstance(body, bytes | None) else json.dumps(body)
        extra = {"content_type": "application/json"} if data is not None else {}
        return (
            getattr(Client(), method)(path, data, headers={"Authorization": f"Bearer {issued[1]}"}, **extra)
            if data is not None
            else getattr(Client(), method)(path, headers={"Authorization": f"Bearer {issued[1]}"})
        )

    return call


def v1(**fields) -> dict:
    return {"model": "test/fake-model", "messages": HELLO, **fields}


def raw(text: str) -> bytes:
    """A body written by hand (JSON that json.dumps would never produce)."""
    return text.encode()


DEEP_ARRAY = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000
NOT_UTF8 = b'{"model": "auto", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
RAW_SURROGATE = b'{"model": "auto", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'
ESCAPED_SURROGATE = raw('{"model": "auto", "messages": [{"role": "user", "content": "\\ud800"}]}')

V1_ROWS = [
    ("nested 100,000 deep", DEEP_ARRAY, 400),
    ("objects nested 50,000 deep", DEEP_OBJECT, 400),
    ("a lone surrogate escape", ESCAPED_SURROGATE, 400),
    ("a lone surrogate in the bytes", RAW_SURROGATE, 400),
    ("bytes that are not UTF-8", NOT_UTF8, 400),
    ("empty body", b"", 400),
    ("a JSON array", b"[]", 400),
    ("JSON null", b"null", 400),
    ("max_tokens 10**30", raw('{"model": "test/fake-model", "messages": [], "max_tokens": 1' + "0" * 30 + "}"), 400),
    ("max_tokens 1e30", v1(max_tokens=1e30), 400),
    ("max_tokens 0", v1(max_tokens=0), 400),
    ("max_tokens above the bound", v1(max_tokens=1_000_001), 400),
    ("max_completion_tokens a string", v1(max_completion_tokens="10"), 400),
    ("temperature NaN", raw('{"model": "test/fake-model", "messages": [], "temperature": NaN}'), 400),
    (
        "temperature Infinity",
        raw('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}'),
        400,
    ),
    ("stop a number", v1(stop=5), 400),
    ("stop five strings", v1(stop=["a", "b", "c", "d", "e"]), 400),
    ("stop a list of numbers", v1(stop=[1]), 400),
    ("stream a string", v1(stream="yes"), 400),
    ("stream_options false", v1(stream_options=False), 400),
    ("stream_options.include_usage a string", v1(stream=True, stream_options={"include_usage": "yes"}), 400),
    ("n 1.5", v1(n=1.5), 400),
    ("n true", v1(n=True), 400),
    ("n 1.0", v1(n=1.0), 400),
    (
        "an image part",
        v1(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        400,
    ),
    ("a text part without text", v1(messages=[{"role": "user", "content": [{"type": "text"}]}]), 400),
    ("content a number", v1(messages=[{"role": "user", "content": 5}]), 400),
    ("messages an object", v1(messages={"role": "user"}), 400),
    ("messages empty", v1(messages=[]), 400),
    ("a message a string", v1(messages=["hi"]), 400),
    ("role tool", v1(messages=[{"role": "tool", "content": "x"}]), 400),
    ("model empty", v1(model=""), 400),
    ("model a number", v1(model=5), 400),
    ("model unknown", v1(model="nope/none"), 404),
    ("tools", v1(tools=[{"type": "function"}]), 400),
]


@committed
@pytest.mark.parametrize("body, status", [row[1:] for row in V1_ROWS], ids=[row[0] for row in V1_ROWS])
def test_openai_api_bad_bodies(key_client, catalogue, body, status):
    response = key_client("post", V1, body)
    assert response.status_code == status, response.content[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


REST_ROWS = [
    ("nested 100,000 deep", DEEP_ARRAY, 400),
    ("a lone surrogate escape", raw('{"message": "\\udfff"}'), 400),
    ("a lone surrogate in the bytes", b'{"message": "\xed\xb0\x80"}', 400),
    ("message empty", {"message": ""}, 400),
    ("message blank", {"message": " \n\t "}, 400),
    ("message a number", {"message": 5}, 400),
    ("message missing", {}, 400),
    ("message too long", {"message": "x" * 32_001}, 400),
    ("session_id a string", {"message": "hi", "session_id": "abc"}, 400),
    ("session_id true", {"message": "hi", "session_id": True}, 400),
    ("session_id 10**30", raw('{"message": "hi", "session_id": 1' + "0" * 30 + "}"), 404),
    ("session_id not yours", {"message": "hi", "session_id": 1}, 404),
    ("model a list", {"message": "hi", "model": []}, 400),
    ("max_tokens 10**30", raw('{"message": "hi", "max_tokens": 1' + "0" * 30 + "}"), 400),
    ("temperature a string", {"message": "hi", "temperature": "hot"}, 400),
    ("stop a number", {"message": "hi", "stop": 5}, 400),
    ("message NUL", {"message": "a\x00b"}, 400),
]


@committed
@pytest.mark.parametrize("path", ["/api/v1/chat/completions", "/api/v1/chat/stream"])
@pytest.mark.parametrize("body, status", [row[1:] for row in REST_ROWS], ids=[row[0] for row in REST_ROWS])
def test_rest_api_bad_bodies_store_nothing(key_client, catalogue, path, body, status):
    response = key_client("post", path, body)
    assert response.status_code == status, response.content[:300]
    assert response.json()["error"]["message"]
    assert not Message.objects.exists() and not Conversation.objects.exists()


QUERY_ROWS = [
    ("/api/v1/sessions?page=%C2%B2", 400),  # page=² passes str.isdigit()
    ("/api/v1/sessions?per_page=%C2%B2", 400),
    ("/api/v1/sessions?page=%D9%A1", 400),  # Arabic-Indic one: int() would take it
    ("/api/v1/sessions?page=0", 400),
    ("/api/v1/sessions?page=-1", 400),
    ("/api/v1/sessions?page=575613505293496", 400),  # above the documented maximum
    ("/api/v1/sessions?page=" + "9" * 5000, 400),
    ("/api/v1/sessions?per_page=101", 400),
    ("/api/v1/sessions?page=1000000000", 200),
    ("/api/v1/stats?days=%C2%B2", 400),
    ("/api/v1/stats?days=0", 400),
    ("/api/v1/stats?days=367", 400),
    ("/api/v1/stats?days=1e3", 400),
    ("/api/v1/sessions/99999999999999999999999", 404),
    ("/api/v1/chat/stream?prompt=a%00b", 400),
    ("/v1/models/%00", 404),
]


@pytest.mark.parametrize("path, status", QUERY_ROWS, ids=[row[0] for row in QUERY_ROWS])
def test_api_bad_queries(key_client, path, status):
    response = key_client("get", path)
    assert response.status_code == status, response.content[:300]


SESSION_EDIT_ROWS = [
    ("nested 100,000 deep", DEEP_ARRAY, 400),
    ("title a lone surrogate", raw('{"title": "\\ud800"}'), 400),
    ("title a number", {"title": 5}, 400),
    ("title too long", {"title": "x" * 201}, 400),
    ("title NUL", {"title": "a\x00b"}, 400),
]


@pytest.mark.parametrize(
    "body, status", [row[1:] for row in SESSION_EDIT_ROWS], ids=[row[0] for row in SESSION_EDIT_ROWS]
)
def test_session_rename_bad_bodies(key_client, user, body, status):
    conversation = Conversation.objects.create(user=user, title="Kept")
    response = key_client("patch", f"/api/v1/sessions/{conversation.pk}", body)
    assert response.status_code == status
    conversation.refresh_from_db()
    assert conversation.title == "Kept"


PAGE_ROWS = [
    ("/chat/conversations/?active=%C2%B2", 200),
    ("/chat/conversations/?page=%C2%B2", 200),
    ("/chat/99999999999999999999999/", 404),
    ("/usage/?end=9999-12-31", 400),
    ("/usage/?end=0001-01-05", 400),
    ("/usage/?start=0001-01-01&end=0001-01-05", 400),
    ("/usage/?start=9999-12-01&end=9999-12-31", 400),
    ("/usage/?end=%C2%B2", 400),
    ("/usage/export.csv?end=9999-12-31", 400),
    ("/usage/export.csv?end=0001-01-05", 400),
    ("/billing/statements/9999-12/", 404),
    ("/billing/statements/9999-12.csv", 404),
    ("/billing/statements/0-1/", 404),
    ("/billing/statements/2026-13/", 404),
    ("/account/api-keys/99999999999999999999999/", 404),
]


@pytest.mark.parametrize("path, status", PAGE_ROWS, ids=[row[0] for row in PAGE_ROWS])
def test_pages_bad_queries(logged_in, path, status):
    response = logged_in.get(path)
    assert response.status_code == status


def test_pages_show_what_is_wrong_with_a_date(logged_in):
    page = logged_in.get("/usage/?end=9999-12-31").content.decode()
    assert "Choose a date from 1 Jan 2000 to 31 Dec 2999." in page


@pytest.fixture
def stripe_keys(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_fuzz"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET


def checkout(obj) -> bytes:
    return json.dumps({"id": "evt_fuzz", "type": "checkout.session.completed", "data": {"object": obj}}).encode()


def paid(metadata) -> dict:
    return {"id": "cs_1", "payment_status": "paid", "metadata": metadata}


WEBHOOK_ROWS = [
    ("data.object a string", checkout("cs_1"), None, 400),
    ("data a string", json.dumps({"id": "evt_1", "type": "x", "data": "x"}).encode(), None, 400),
    ("id a number", json.dumps({"id": 5, "type": "x", "data": {"object": {}}}).encode(), None, 400),
    ("type a list", json.dumps({"id": "evt_2", "type": [], "data": {"object": {}}}).encode(), None, 400),
    ("nested 100,000 deep", DEEP_ARRAY, None, 400),
    ("a lone surrogate", raw('{"id": "\\ud800", "type": "x", "data": {"object": {}}}'), None, 400),
    ("user_id abc", checkout(paid({"user_id": "abc", "plan": "pro"})), None, 200),
    ("user_id ²", checkout(paid({"user_id": "²", "plan": "pro"})), None, 200),
    ("user_id a list", checkout(paid({"user_id": [1], "plan": "pro"})), None, 200),
    ("plan an object", checkout(paid({"user_id": "999999", "plan": {}})), None, 200),
    ("metadata a string", checkout(paid("x")), None, 200),
    (
        "deleted subscription id a list",
        json.dumps({"id": "evt_3", "type": "customer.subscription.deleted", "data": {"object": {"id": []}}}).encode(),
        None,
        200,
    ),
    ("signature timestamp ²", checkout({}), "t=²,v1=00", 400),
    ("signature without v1", checkout({}), "t=1", 400),
    ("signature garbage", checkout({}), "=,=,,", 400),
]


@pytest.mark.parametrize(
    "payload, signature, status", [row[1:] for row in WEBHOOK_ROWS], ids=[row[0] for row in WEBHOOK_ROWS]
)
def test_stripe_webhook_bad_events(stripe_keys, free_user, payload, signature, status):
    signature = stripe_api.sign(payload, WEBHOOK_SECRET) if signature is None else signature
    response = Client().post(
        "/billing/stripe/webhook/", payload, content_type="application/json", headers={"Stripe-Signature": signature}
    )
    assert response.status_code == status
    assert free_user.subscriptions.get(is_active=True).plan.slug == "free"


SOCKET_FRAMES = [
    ("nested 100,000 deep", "[" * 100_000),
    ("a lone surrogate", '{"action": "send", "message": "\\ud800"}'),
    ("not JSON", "not json"),
    ("a JSON list", "[1, 2]"),
    ("JSON null", "null"),
    ("message a number", '{"action": "send", "message": 5}'),
    ("message an object", '{"action": "send", "message": {"a": 1}}'),
    ("model a list", '{"action": "send", "message": "hi", "model": []}'),
    ("action a list", '{"action": [], "message": "hi"}'),
    ("action unknown", '{"action": "drop tables"}'),
    ("model unknown", '{"action": "send", "message": "hi", "model": "nope/none"}'),
    ("message NUL", '{"action": "send", "message": "a\\u0000b"}'),
    ("system_prompt NUL", '{"action": "send", "message": "hi", "system_prompt": "\\u0000"}'),
]


@committed
async def test_socket_bad_frames_get_a_visible_error_and_the_socket_stays_open(user):
    conversation = await Conversation.objects.acreate(user=user, title="Fuzz")
    cookie = await sync_to_async(session_cookie_header)(user)
    socket = WebsocketCommunicator(
        application, f"/ws/chat/{conversation.pk}/", headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)]
    )
    connected, _ = await socket.connect()
    assert connected
    for name, frame in SOCKET_FRAMES:
        await socket.send_to(text_data=frame)
        answer = await socket.receive_from(timeout=5)
        assert 'class="chat-error"' in answer, name
    await socket.send_to(bytes_data=b"\x00\xff")
    assert "could not be read" in await socket.receive_from(timeout=5)
    # Still open and usable after all of them.
    await socket.send_json_to({"action": "send", "message": "  "})
    assert "Write a message first." in await socket.receive_from(timeout=5)
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await socket.disconnect()


@committed
async def test_an_enterprise_key_with_a_budget_and_a_huge_max_tokens(catalogue, user):
    await sync_to_async(start_subscription)(user, await Plan.objects.aget(slug="enterprise"))
    _, key = await sync_to_async(issue_key)(user, "budgeted", monthly_budget=Decimal("100"))
    client = KeyClient(key)
    too_big = await client.post(V1, raw(json.dumps(v1())[:-1] + ', "max_tokens": 1' + "0" * 30 + "}"))
    assert too_big.status_code == 400 and too_big.json()["error"]["param"] == "max_tokens"
    largest = await client.post(V1, v1(max_tokens=1_000_000))
    assert largest.status_code == 200
    assert await UsageRecord.objects.acount() == 1


@committed
def test_an_upstream_error_body_is_not_passed_on(key_client, catalogue, upstream):
    response = key_client("post", V1, v1(model="test/fail-500"))
    assert response.status_code == 502
    assert "fake failure" not in response.json()["error"]["message"]  # the upstream's own words
    assert "http_500" in response.json()["error"]["message"]


def test_a_paid_checkout_with_ids_of_the_wrong_type_keeps_none_of_them(stripe_keys, free_user):
    payload = checkout(
        {**paid({"user_id": str(free_user.pk), "plan": "pro"}), "customer": {"id": "c"}, "subscription": 7}
    )
    response = Client().post(
        "/billing/stripe/webhook/",
        payload,
        content_type="application/json",
        headers={"Stripe-Signature": stripe_api.sign(payload, WEBHOOK_SECRET)},
    )
    assert response.status_code == 200
    subscription = free_user.subscriptions.get(is_active=True)
    assert (subscription.plan.slug, subscription.stripe_customer_id, subscription.stripe_subscription_id) == (
        "pro",
        "",
        "",
    )


def test_csv_cells_that_look_like_formulas_are_neutralised(django_user_model, make_superuser):
    victim = django_user_model.objects.create_user("=cmd|' /C calc'!A0@example.com", "correct horse battery")
    api_key, _ = issue_key(victim, "@SUM(1+1)")
    row = UsageRecord.objects.create(user=victim, api_key=api_key, model_slug="+a/model", provider="x")
    rollups.add(row)  # written here, not by metering: its rollup too
    admin_csv = b"".join(
        make_superuser.post(
            "/admin/billing/usagerecord/", {"action": "export_csv", "_selected_action": [row.pk]}
        ).streaming_content
    ).decode()
    assert "'=cmd|" in admin_csv and ",=cmd" not in admin_csv
    assert "'+a/model" in admin_csv
    day = row.created_at.date().isoformat()
    usage_csv = logged_in_client(victim).get(f"/usage/export.csv?start={day}&end={day}").content.decode()
    assert "'@SUM(1+1)" in usage_csv and "'+a/model" in usage_csv


@pytest.fixture
def make_superuser(django_user_model):
    boss = django_user_model.objects.create_superuser("boss@example.com", "correct horse battery")
    return logged_in_client(boss)


# Endpoints of the branches, sidebar, account data, two-factor and estimate work: {own} is the user's
# conversation, {mine} its user message, {theirs} and {their_message} another person's.
@pytest.fixture
def ids(user, other_user) -> dict:
    own = Conversation.objects.create(user=user, title="Mine")
    mine = Message.objects.create(conversation=own, role="user", content="What is 2 + 2?")
    Message.objects.create(conversation=own, role="assistant", content="4", parent=mine)
    theirs = Conversation.objects.create(user=other_user, title="Theirs")
    their_message = Message.objects.create(conversation=theirs, role="user", content="Private")
    return {"own": own.pk, "mine": mine.pk, "theirs": theirs.pk, "their_message": their_message.pk}


LONG = "x" * 5000
NEW_PAGE_ROWS = [
    ("/chat/?q=" + LONG, 200),
    ("/chat/conversations/?q=" + LONG, 200),
    ("/chat/conversations/?q=%00", 200),  # PostgreSQL refuses NUL in a string
    ("/chat/conversations/?q=%25_%5C%27%22%3C", 200),  # LIKE's wildcards, quotes, markup
    ("/chat/conversations/?q=%ED%A0%80", 200),  # a surrogate's UTF-8 bytes
    ("/chat/conversations/?view=archived&page=%C2%B2&after=%00", 200),
    ("/chat/conversations/?after=" + LONG, 200),
    ("/chat/{own}/?m=%C2%B2", 200),
    ("/chat/{own}/?m=99999999999999999999999", 200),
    ("/chat/{own}/?m={their_message}", 200),
    ("/chat/{own}/?q=%00", 200),
    ("/chat/{own}/messages/?before=%C2%B2", 400),
    ("/chat/{own}/messages/?before=%D9%A1", 400),
    ("/chat/{own}/messages/?before=99999999999999999999999", 400),
    ("/chat/{own}/messages/?before={their_message}", 200),
    ("/chat/{theirs}/?m={their_message}", 404),
    ("/usage/activity/?source=%C2%B2", 400),
    ("/usage/activity/?source=99999999999999999999999", 400),
    ("/usage/activity/?status=%00", 400),
    ("/usage/activity/?model=%00", 400),
    ("/usage/activity/?purpose=%00", 200),  # not a filter (yet): ignored
    ("/usage/activity/?page=%C2%B2", 200),
    ("/account/export.zip?x=%00", 200),
    ("/account/delete/?x=%00", 200),
]


@pytest.mark.parametrize("path, status", NEW_PAGE_ROWS, ids=[row[0][:80] for row in NEW_PAGE_ROWS])
def test_new_pages_bad_queries(logged_in, ids, path, status):
    response = logged_in.get(path.format(**ids))
    assert response.status_code == status


NEW_POST_ROWS = [
    ("/chat/{own}/messages/{mine}/version/", {}, 400),
    ("/chat/{own}/messages/{mine}/version/", {"step": "2"}, 400),
    ("/chat/{own}/messages/{mine}/version/", {"step": "²"}, 400),
    ("/chat/{own}/messages/{mine}/version/", {"step": "-1\x00"}, 400),
    ("/chat/{own}/messages/{mine}/version/", {"step": "1"}, 409),  # no next version
    ("/chat/{own}/messages/{their_message}/version/", {"step": "1"}, 409),
    ("/chat/{own}/messages/99999999999999999999999/version/", {"step": "1"}, 409),
    ("/chat/{theirs}/messages/{their_message}/version/", {"step": "1"}, 404),
    ("/chat/{theirs}/pin/", {"pinned": "1"}, 404),
    ("/chat/{theirs}/archive/", {"archived": "1"}, 404),
    ("/chat/{theirs}/archive/", {"archived": "0"}, 404),
    ("/chat/99999999999999999999999/pin/", {"pinned": "1"}, 404),
    ("/chat/{own}/pin/", {"pinned": "²"}, 302),  # anything but 1 unpins
    ("/chat/{own}/archive/", {"archived": ["1", "0"]}, 302),
    ("/account/delete/", {}, 422),
    ("/account/delete/", {"password": "wrong", "confirmation": "delete my account"}, 422),
    ("/account/delete/", {"password": "\x00", "confirmation": "\x00"}, 422),
    ("/account/delete/", {"password": LONG, "confirmation": LONG}, 422),
    ("/account/export.zip", {}, 405),
]


@pytest.mark.parametrize(
    "path, data, status", NEW_POST_ROWS, ids=[f"{row[0]} {str(row[1])[:40]}" for row in NEW_POST_ROWS]
)
def test_new_forms_bad_posts(logged_in, user, ids, path, data, status):
    response = logged_in.post(path.format(**ids), data)
    assert response.status_code == status
    user.refresh_from_db()  # the account is still there
    assert Conversation.objects.filter(pk=ids["theirs"], pinned=False, archived=False).exists()


HTMX_SIDEBAR_ROWS = [
    ("/chat/{own}/pin/", {"pinned": "1", "q": "\x00"}),
    ("/chat/{own}/archive/", {"archived": "1", "q": LONG, "view": "archived", "page": "²"}),
    ("/chat/{own}/archive/", {"archived": "0", "active": "²", "after": "\x00"}),
]


@pytest.mark.parametrize("path, data", HTMX_SIDEBAR_ROWS, ids=[str(row[1])[:60] for row in HTMX_SIDEBAR_ROWS])
def test_sidebar_htmx_posts_with_bad_list_state(logged_in, ids, path, data):
    response = logged_in.post(path.format(**ids), data, headers={"HX-Request": "true"})
    assert response.status_code == 200


ESTIMATE_ROWS = [
    ("attachments a string", {"message": "hi", "attachments": "1"}, 400),
    ("attachments an object", {"message": "hi", "attachments": {"id": 1}}, 400),
    ("attachments strings", {"message": "hi", "attachments": ["1"]}, 400),
    ("attachments ²", {"message": "hi", "attachments": ["²"]}, 400),
    ("attachments negative", {"message": "hi", "attachments": [-1]}, 400),
    ("attachments zero", {"message": "hi", "attachments": [0]}, 400),
    ("attachments a float", {"message": "hi", "attachments": [1.5]}, 400),
    ("attachments true", {"message": "hi", "attachments": [True]}, 400),
    ("attachments nested", {"message": "hi", "attachments": [[1]]}, 400),
    ("attachments 10**30", raw('{"message": "hi", "attachments": [1' + "0" * 30 + "]}"), 400),
    ("attachments 10,000 ids", {"message": "hi", "attachments": list(range(1, 10_001))}, 400),
    ("attachments not found", {"message": "hi", "attachments": [999_999]}, 400),
    ("message a lone surrogate", raw('{"message": "\\ud800", "attachments": []}'), 400),
    ("message NUL", {"message": "\x00"}, 400),
]


@committed
@pytest.mark.parametrize("body, status", [row[1:] for row in ESTIMATE_ROWS], ids=[row[0] for row in ESTIMATE_ROWS])
def test_estimate_bad_bodies(key_client, catalogue, body, status):
    response = key_client("post", "/api/v1/estimate", body)
    assert response.status_code == status, response.content[:300]
    assert response.json()["error"]["message"]


@committed
def test_estimate_of_someone_elses_file_is_refused(key_client, catalogue, other_user):
    from chat.models import Attachment

    theirs = Attachment.objects.create(user=other_user, name="secret.txt", kind=Attachment.Kind.DOCUMENT, size=1)
    response = key_client("post", "/api/v1/estimate", {"message": "hi", "attachments": [theirs.pk]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "attachments"


def test_two_factor_bad_codes(user):
    from accounts.tests.test_two_factor import set_up_authenticator, sign_in_with_password

    set_up_authenticator(user)
    client = Client()
    assert sign_in_with_password(client, user)["Location"] == "/accounts/2fa/authenticate/"
    for code in ["", "abc", "²²²²²²", "\x00", "9" * 5000, "12345", "1234567", " 000000 "]:
        response = client.post("/accounts/2fa/authenticate/", {"code": code})
        assert response.status_code == 200, repr(code)
        assert client.get("/chat/").status_code == 302, repr(code)


def test_two_factor_setup_bad_codes(logged_in, user):
    logged_in.post("/accounts/reauthenticate/", {"password": "correct horse battery"})
    assert logged_in.get("/accounts/2fa/totp/activate/").status_code == 200
    for code in ["", "abc", "\x00", "9" * 5000]:
        response = logged_in.post("/accounts/2fa/totp/activate/", {"code": code})
        assert response.status_code == 200, repr(code)
    assert "Two-factor sign-in: off" in logged_in.get("/account/").content.decode()


# Frames of the edit and regenerate actions: each a visible error, the socket kept open, nothing stored.
def branch_frames(ids: dict) -> list[tuple[str, dict | str]]:
    return [
        ("edit without message_id", {"action": "edit", "message": "hi"}),
        ("edit message_id abc", {"action": "edit", "message": "hi", "message_id": "abc"}),
        ("edit message_id ²", {"action": "edit", "message": "hi", "message_id": "²"}),
        ("edit message_id a list", {"action": "edit", "message": "hi", "message_id": [ids["mine"]]}),
        ("edit message_id 1.5", {"action": "edit", "message": "hi", "message_id": 1.5}),
        ("edit message_id -1", {"action": "edit", "message": "hi", "message_id": -1}),
        ("edit message_id 10**30", '{"action": "edit", "message": "hi", "message_id": 1' + "0" * 30 + "}"),
        ("edit someone else's message", {"action": "edit", "message": "hi", "message_id": ids["their_message"]}),
        ("edit a reply", {"action": "edit", "message": "hi", "message_id": ids["reply"]}),
        ("edit without text", {"action": "edit", "message_id": ids["mine"]}),
        ("edit blank text", {"action": "edit", "message": " \n ", "message_id": ids["mine"]}),
        ("edit text a number", {"action": "edit", "message": 5, "message_id": ids["mine"]}),
        ("edit text too long", {"action": "edit", "message": "x" * 32_001, "message_id": ids["mine"]}),
        ("edit a lone surrogate", '{"action": "edit", "message": "\\ud800", "message_id": ' + str(ids["mine"]) + "}"),
        ("edit model unknown", {"action": "edit", "message": "hi", "message_id": ids["mine"], "model": "no/ne"}),
        ("regenerate model a list", {"action": "regenerate", "model": []}),
        ("regenerate model unknown", {"action": "regenerate", "model": "nope/none"}),
        ("regenerate model a number", {"action": "regenerate", "model": 5}),
        ("send attachments ²", {"action": "send", "message": "hi", "attachments": ["²"]}),
        ("send attachments 10**30", '{"action": "send", "message": "hi", "attachments": [1' + "0" * 30 + "]}"),
        ("send attachments someone else's", {"action": "send", "message": "hi", "attachments": [ids["their_file"]]}),
        ("send attachments an object", {"action": "send", "message": "hi", "attachments": {"a": 1}}),
    ]


@committed
async def test_socket_bad_edit_and_regenerate_frames(user, other_user):
    from chat.models import Attachment

    own = await Conversation.objects.acreate(user=user, title="Mine")
    mine = await Message.objects.acreate(conversation=own, role="user", content="What is 2 + 2?")
    reply = await Message.objects.acreate(conversation=own, role="assistant", content="4", parent=mine)
    theirs = await Conversation.objects.acreate(user=other_user, title="Theirs")
    their_message = await Message.objects.acreate(conversation=theirs, role="user", content="Private")
    their_file = await Attachment.objects.acreate(
        user=other_user, name="secret.txt", kind=Attachment.Kind.DOCUMENT, size=1
    )
    ids = {"mine": mine.pk, "reply": reply.pk, "their_message": their_message.pk, "their_file": their_file.pk}
    cookie = await sync_to_async(session_cookie_header)(user)
    socket = WebsocketCommunicator(
        application, f"/ws/chat/{own.pk}/", headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)]
    )
    connected, _ = await socket.connect()
    assert connected
    for name, frame in branch_frames(ids):
        await socket.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))
        answer = await socket.receive_from(timeout=5)
        assert 'class="chat-error"' in answer, name
    await socket.send_json_to({"action": "send", "message": "  "})
    assert "Write a message first." in await socket.receive_from(timeout=5)
    assert await Message.objects.filter(conversation=own).acount() == 2
    assert await Message.objects.filter(conversation=theirs).acount() == 1
    await socket.disconnect()


NEW_SESSION_ROWS = [
    ("title NUL", {"title": "\x00"}, 400),
    ("title a list", {"title": ["a"]}, 400),
    ("model NUL", {"model": "\x00"}, 404),
]


@committed
@pytest.mark.parametrize(
    "body, status", [row[1:] for row in NEW_SESSION_ROWS], ids=[row[0] for row in NEW_SESSION_ROWS]
)
def test_new_session_bad_bodies(key_client, catalogue, body, status):
    response = key_client("post", "/api/v1/sessions", body)
    assert response.status_code == status, response.content[:300]
    assert not Conversation.objects.exists()


ADMIN_ROWS = [
    "/admin/billing/usagerecord/?purpose=%00",
    "/admin/billing/usagerecord/?purpose__exact=" + LONG,
    "/admin/billing/usagerecord/?purpose__exact=%00",
    "/admin/billing/usagerecord/?q=%00",
    "/admin/accounts/auditentry/?q=%00",
]


@pytest.mark.parametrize("path", ADMIN_ROWS, ids=[row[:70] for row in ADMIN_ROWS])
def test_admin_lists_bad_filters(make_superuser, path):
    # Followed: a bad filter is sent to the admin's own "?e=1" page.
    assert make_superuser.get(path, follow=True).status_code == 200
