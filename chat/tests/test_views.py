"""The chat pages: sidebar, conversations, history rendering, model picker, ownership."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from billing.models import UsageRecord
from chat.models import AIModel, Conversation, Message, Provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(user):
    return Conversation.objects.create(user=user, title="Mine")


@pytest.fixture
def foreign(other_user):
    conversation = Conversation.objects.create(user=other_user, title="Mallory's secret plans")
    Message.objects.create(conversation=conversation, role="user", content="the vault code is 1234")
    return conversation


@pytest.fixture
def priced_model():
    return AIModel.objects.create(
        slug="fake/priced",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="fake-model",
        name="Fake Priced",
        input_price_per_m=Decimal("0.15"),
        output_price_per_m=Decimal("0.60"),
    )


@pytest.fixture
def local_model():
    return AIModel.objects.create(
        slug="local/smollm2-135m-instruct",
        provider=Provider.LOCAL,
        upstream_id="smollm2-135m-instruct",
        name="SmolLM2 135M Instruct",
    )


def make_conversations(user, count: int) -> list[Conversation]:
    """`count` conversations, the first the oldest, one minute apart."""
    start = timezone.now() - timedelta(days=1)
    made = [Conversation.objects.create(user=user, title=f"Chat {i:02d}") for i in range(count)]
    for i, conversation in enumerate(made):
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=start + timedelta(minutes=i))
    return made


def listed_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li id="conversation-(\d+)"', html)]


@pytest.mark.parametrize("url", ["/chat/", "/chat/1/", "/chat/conversations/", "/account/"])
def test_it_sends_anonymous_visitors_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_lists_conversations_newest_first_thirty_a_page(logged_in, user):
    made = make_conversations(user, 35)
    first = logged_in.get("/chat/conversations/")
    newest_first = [c.pk for c in reversed(made)]
    assert listed_ids(first.content.decode()) == newest_first[:30]
    # The next page is asked with the group of this page's last chat (its heading is not repeated).
    assert re.search(
        r'hx-get="/chat/conversations/\?page=2&amp;after=(today|yesterday|week|older)"', first.content.decode()
    )
    # "intersect", not "revealed": the list scrolls inside its own box, where htmx never sees "revealed".
    assert 'hx-trigger="intersect once"' in first.content.decode()
    second = logged_in.get("/chat/conversations/?page=2")
    assert listed_ids(second.content.decode()) == newest_first[30:]
    assert "hx-trigger" not in second.content.decode()


def test_the_conversation_page_shows_the_first_page_of_the_sidebar(logged_in, user):
    made = make_conversations(user, 31)
    html = logged_in.get(made[-1].get_absolute_url()).content.decode()
    assert listed_ids(html)[:2] == [made[-1].pk, made[-2].pk]
    assert made[0].pk not in listed_ids(html)
    assert 'class="conversation-item active"' in html


def test_chat_opens_a_composer_without_storing_anything(logged_in, user):
    make_conversations(user, 2)
    for _ in range(3):
        response = logged_in.get("/chat/")
        html = response.content.decode()
        assert response.status_code == 200
        assert 'ws-connect="/ws/chat/new/"' in html
        assert 'id="message-input"' in html and 'id="chat-hint"' in html
        assert "<title>New chat · AI Hub</title>" in html
    assert Conversation.objects.filter(user=user).count() == 2


def test_the_first_visit_shows_the_composer(logged_in, user):
    html = logged_in.get("/chat/").content.decode()
    assert 'id="message-input"' in html
    assert "No conversations yet." in html


def test_new_chat_stores_no_empty_conversation(logged_in, user):
    for headers in ({}, {"HX-Request": "true"}, {}):
        response = logged_in.post("/chat/new/", headers=headers)
        assert response.status_code == 302 and response["Location"] == "/chat/"
    assert logged_in.get("/chat/new/")["Location"] == "/chat/"
    assert not Conversation.objects.filter(user=user).exists()


def selected_model_in(html: str) -> str:
    return re.search(r'<option value="([^"]+)"[^>]* selected', html).group(1)


def test_a_new_chat_starts_with_the_model_of_the_last_chat(logged_in, user, upstream, priced_model):
    assert selected_model_in(logged_in.get("/chat/").content.decode()) == "auto"
    older, newer = make_conversations(user, 2)
    Conversation.objects.filter(pk=newer.pk).update(model=priced_model)
    assert selected_model_in(logged_in.get("/chat/").content.decode()) == "fake/priced"


def test_a_new_chat_starts_with_the_accounts_default_model(logged_in, user, upstream, priced_model, local_model):
    newer = make_conversations(user, 1)[0]
    Conversation.objects.filter(pk=newer.pk).update(model=priced_model)
    user.default_model = local_model
    user.save()
    assert selected_model_in(logged_in.get("/chat/").content.decode()) == "local/smollm2-135m-instruct"


def test_a_model_taken_out_of_the_catalogue_is_not_preselected(logged_in, user, upstream, priced_model):
    newer = make_conversations(user, 1)[0]
    Conversation.objects.filter(pk=newer.pk).update(model=priced_model)
    AIModel.objects.filter(pk=priced_model.pk).update(is_active=False)
    assert selected_model_in(logged_in.get("/chat/").content.decode()) == "auto"


def test_it_renames_a_conversation(logged_in, conversation):
    response = logged_in.post(
        f"/chat/{conversation.pk}/rename/", {"title": "  Trip   to Rome "}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "Trip to Rome" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Trip to Rome"


def test_renaming_the_open_conversation_updates_its_heading_and_the_tab_title(logged_in, conversation, other_user):
    other = Conversation.objects.create(user=conversation.user, title="Another")
    html = logged_in.post(
        f"/chat/{conversation.pk}/rename/",
        {"title": "Trip to Rome", "active": conversation.pk},
        headers={"HX-Request": "true"},
    ).content.decode()
    assert "<title>Trip to Rome · AI Hub</title>" in html
    assert '<h2 id="conversation-heading" hx-swap-oob="outerHTML">Trip to Rome</h2>' in html
    html = logged_in.post(
        f"/chat/{other.pk}/rename/", {"title": "Elsewhere", "active": conversation.pk}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "<title>" not in html and "conversation-heading" not in html  # another one: only its sidebar item


def test_it_refuses_an_empty_title(logged_in, conversation):
    response = logged_in.post(f"/chat/{conversation.pk}/rename/", {"title": "   "}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert "A title cannot be empty." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Mine"


def test_it_asks_before_deleting(logged_in, conversation):
    html = logged_in.get(conversation.get_absolute_url()).content.decode()
    assert f'hx-post="/chat/{conversation.pk}/delete/"' in html
    assert 'hx-confirm="Delete “Mine” and all its messages?"' in html


def test_it_deletes_a_conversation(logged_in, conversation):
    response = logged_in.post(f"/chat/{conversation.pk}/delete/")
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_deleting_the_open_conversation_from_htmx_leaves_the_page(logged_in, conversation):
    response = logged_in.post(
        f"/chat/{conversation.pk}/delete/", {"active": conversation.pk}, headers={"HX-Request": "true"}
    )
    assert response["HX-Redirect"] == "/chat/"


def test_it_searches_titles(logged_in, user):
    rome = Conversation.objects.create(user=user, title="Trip to Rome")
    Conversation.objects.create(user=user, title="Tax return")
    html = logged_in.get("/chat/conversations/", {"q": "rome"}).content.decode()
    assert listed_ids(html) == [rome.pk]


def test_it_searches_message_text(logged_in, user):
    recipe = Conversation.objects.create(user=user, title="Dinner")
    Message.objects.create(conversation=recipe, role="assistant", content="Add the saffron last.")
    Conversation.objects.create(user=user, title="Other")
    html = logged_in.get("/chat/conversations/", {"q": "SAFFRON"}).content.decode()
    assert listed_ids(html) == [recipe.pk]


def test_the_open_conversation_stays_highlighted_in_search_results(logged_in, user):
    rome = Conversation.objects.create(user=user, title="Trip to Rome")
    html = logged_in.get("/chat/conversations/", {"q": "rome", "active": rome.pk}).content.decode()
    assert f'<li id="conversation-{rome.pk}" class="conversation-item active">' in html


def test_a_search_without_matches_says_so(logged_in, conversation):
    html = logged_in.get("/chat/conversations/", {"q": "zebra"}).content.decode()
    assert "Nothing matches “zebra”." in html


def test_it_never_lists_other_users_conversations(logged_in, conversation, foreign):
    assert listed_ids(logged_in.get("/chat/conversations/").content.decode()) == [conversation.pk]
    assert listed_ids(logged_in.get("/chat/conversations/", {"q": "vault"}).content.decode()) == []
    assert "Mallory" not in logged_in.get(conversation.get_absolute_url()).content.decode()


def test_it_hides_other_users_conversations(logged_in, foreign):
    assert logged_in.get(foreign.get_absolute_url()).status_code == 404


def test_it_refuses_to_rename_other_users_conversations(logged_in, foreign):
    assert logged_in.post(f"/chat/{foreign.pk}/rename/", {"title": "pwned"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.title == "Mallory's secret plans"


def test_it_refuses_to_delete_other_users_conversations(logged_in, foreign):
    assert logged_in.post(f"/chat/{foreign.pk}/delete/").status_code == 404
    assert Conversation.objects.filter(pk=foreign.pk).exists()


HOSTILE_REPLY = """Here you go:

<script>alert(1)</script>

<img src=x onerror="alert(2)">

[click me](javascript:alert(3)) and <a href="javascript:alert(4)">raw link</a>

<div style="position:fixed" onclick="alert(5)">raw html</div>

```python
print("<b>hi</b>")
```
"""


class ElementCollector(HTMLParser):
    """Every element and attribute a browser would build from the HTML."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_it_renders_replies_as_inert_markdown(logged_in, conversation):
    reply = Message.objects.create(conversation=conversation, role="assistant", content=HOSTILE_REPLY)
    html = logged_in.get(conversation.get_absolute_url()).content.decode()
    start = html.index(f'<article id="message-{reply.pk}"')
    article = html[start : html.index("</article>", start)]
    collector = ElementCollector()
    collector.feed(article)
    tags = {tag for tag, _ in collector.tags}
    assert tags <= {"article", "div", "p", "a", "pre", "code", "footer", "span", "button"}
    assert not [name for _, attrs in collector.tags for name in attrs if name.startswith("on")]
    assert not [a for tag, a in collector.tags if tag == "a" and "javascript" in (a.get("href") or "")]
    divs = [a["class"] for tag, a in collector.tags if tag == "div"]
    assert divs == ["content markdown", "code-block", "code-head", "message-tools"]  # the page's own, no others
    buttons = [a for tag, a in collector.tags if tag == "button"]
    assert [b.get("type") for b in buttons] == ["button", "button"]  # the two copy buttons, inert
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in article  # the model's words are shown, not run
    code = article[article.index('<pre><code class="language-python">') :]
    assert re.sub(r"<[^>]+>", "", code[: code.index("</pre>")]).startswith('print("&lt;b&gt;hi&lt;/b&gt;")')


def test_it_escapes_user_messages(logged_in, conversation):
    Message.objects.create(conversation=conversation, role="user", content="<script>alert(1)</script>")
    html = logged_in.get(conversation.get_absolute_url()).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_it_shows_model_provider_tokens_and_cost_per_reply(logged_in, conversation, priced_model):
    Message.objects.create(conversation=conversation, role="user", content="Hi")
    usage = UsageRecord.objects.create(
        user=conversation.user,
        model=priced_model,
        model_slug=priced_model.slug,
        provider="openai_compat",
        prompt_tokens=1200,
        completion_tokens=345,
        cost=Decimal("0.000387"),
        ttft_ms=420,
        status="complete",
    )
    Message.objects.create(
        conversation=conversation, role="assistant", content="Hello!", model=priced_model, usage_id=usage.request_id
    )
    html = logged_in.get(conversation.get_absolute_url()).content.decode()
    assert '<span class="meta-model">Fake Priced</span>' in html
    assert "via OpenAI-compatible" in html
    assert "1200 in + 345 out tokens" in html
    assert '<span class="meta-cost">$0.000387</span>' in html


def test_it_shows_stopped_and_failed_replies_as_such(logged_in, conversation):
    Message.objects.create(conversation=conversation, role="assistant", content="Half a", status="stopped")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Bro",
        status="failed",
        error="upstream stream ended before it was complete",
    )
    html = logged_in.get(conversation.get_absolute_url()).content.decode()
    assert "Stopped — partial reply kept" in html
    assert "The reply failed part-way: upstream stream ended before it was complete" in html


def test_the_model_picker_groups_models_by_provider_with_prices(
    logged_in, conversation, upstream, priced_model, local_model
):
    html = logged_in.get(conversation.get_absolute_url()).content.decode()
    picker = html[html.index('<select id="model-select"') : html.index("</select>")]
    options = re.findall(r'<option value="([^"]+)"', picker)
    assert options[0] == "auto"
    assert set(options[1:]) == {"fake/priced", "local/smollm2-135m-instruct"}
    assert '<optgroup label="OpenAI-compatible">' in picker
    assert '<optgroup label="Local (CPU)">' in picker
    assert "$0.15 in / $0.60 out per 1M" in picker
    local = picker[picker.index('value="local/smollm2-135m-instruct"') :]
    assert "free" in local[: local.index("</option>")].lower()


def test_the_model_picker_leaves_out_providers_without_configuration(logged_in, conversation, priced_model, settings):
    settings.OPENAI_COMPAT_BASE_URL = ""
    html = logged_in.get(conversation.get_absolute_url()).content.decode()
    assert "fake/priced" not in html


def test_the_conversation_page_makes_few_queries(logged_in, conversation, priced_model, django_assert_max_num_queries):
    for i in range(20):
        Message.objects.create(conversation=conversation, role="user", content=f"q{i}")
        Message.objects.create(conversation=conversation, role="assistant", content=f"a{i}", model=priced_model)
    with django_assert_max_num_queries(12):
        assert logged_in.get(conversation.get_absolute_url()).status_code == 200


def test_the_page_connects_its_socket_and_links_a_favicon(logged_in, conversation):
    html = logged_in.get(conversation.get_absolute_url()).content.decode()
    assert f'ws-connect="/ws/chat/{conversation.pk}/"' in html
    href = re.search(r'<link rel="icon" [^>]*href="([^"]+)"', html).group(1)
    assert logged_in.get(href).status_code == 200


def test_an_empty_conversation_shows_the_hint(logged_in, conversation):
    assert 'id="chat-hint"' in logged_in.get(conversation.get_absolute_url()).content.decode()
