"""Every request fits its model's context: the reply's allowance, then the newest history that fits."""

from __future__ import annotations

import pytest

from billing.limits import LimitExceeded
from billing.metering import count_prompt_tokens, tokenizer_margin
from billing.models import Plan
from billing.subscriptions import start_subscription
from chat.gateway.context_window import OUTPUT_FLOOR, ContextTooSmall, fit
from chat.models import AIModel, Conversation, Message, Provider
from chat.tests.api_fixtures import api_client, issued  # noqa: F401  (api_client needs issued)

pytestmark = pytest.mark.django_db

SYSTEM = {"role": "system", "content": "You answer in one short sentence."}


def exchange(n: int) -> list[dict]:
    return [
        {"role": "user", "content": f"Question {n}: " + "tell me about the harbour lights " * 8},
        {"role": "assistant", "content": f"Answer {n}: " + "the lights guide the boats home " * 8},
    ]


def long_history(exchanges: int) -> list[dict]:
    messages = [SYSTEM]
    for n in range(exchanges):
        messages += exchange(n)
    return messages + [{"role": "user", "content": "And the last question?"}]


@pytest.fixture
def small_model(upstream):
    return AIModel.objects.create(
        slug="test/small",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="fake-model",
        name="Small context",
        context_length=1000,
    )


def test_the_system_prompt_and_the_newest_messages_are_kept_the_oldest_dropped(small_model):
    messages = long_history(40)

    fitted = fit(messages, [small_model], max_tokens=200)

    assert fitted.dropped > 0
    assert fitted.messages[0] == SYSTEM
    assert fitted.messages[-1] == messages[-1]
    kept = fitted.messages[1:]
    assert kept == messages[len(messages) - len(kept) :]  # the newest, whole and in order
    assert kept[0]["role"] == "user"  # never a reply whose question was left out
    assert fitted.max_tokens == 200
    usable = small_model.context_length * (1 - tokenizer_margin())
    assert count_prompt_tokens(fitted.messages) + fitted.max_tokens <= usable
    # Left out in blocks of about a quarter of the context: more than half of the room is used.
    assert count_prompt_tokens(fitted.messages) + fitted.max_tokens > usable / 2


def test_a_growing_conversation_keeps_its_first_sent_message_for_many_turns(upstream):
    """So the local model (and providers' prompt caches) reuse the prompt they evaluated last turn."""
    model = AIModel.objects.create(
        slug="test/4k", provider=Provider.OPENAI_COMPAT, upstream_id="fake-4k", name="4k", context_length=4000
    )
    history = [SYSTEM]
    first_sent = []
    for n in range(60):
        question, answer = exchange(n)
        fitted = fit([*history, question], [model], max_tokens=100)
        assert count_prompt_tokens(fitted.messages) + 100 <= model.context_length
        first_sent.append(history.index(fitted.messages[1]) if fitted.dropped else 1)
        history += [question, answer]

    cuts = sorted(set(first_sent))
    assert first_sent == sorted(first_sent)  # the cut only moves forward...
    assert 3 <= len(cuts) <= 60 / 4, first_sent  # ...and stays put for several turns at a time


def test_a_short_conversation_is_sent_whole(small_model):
    messages = long_history(1)

    fitted = fit(messages, [small_model], max_tokens=None)

    assert fitted.messages == messages
    assert fitted.dropped == 0
    # Without max_tokens the reply may use a quarter of the context, and no more than what is left.
    assert fitted.max_tokens == small_model.context_length // 4


def test_a_plan_cap_above_the_context_does_not_crowd_out_the_history(small_model):
    messages = long_history(2)

    fitted = fit(messages, [small_model], max_tokens=None, cap=8192)
    capped = fit(messages, [small_model], max_tokens=None, cap=100)

    assert fitted.messages == messages and fitted.max_tokens == small_model.context_length // 4
    assert capped.messages == messages and capped.max_tokens == 100


def test_the_allowance_shrinks_to_what_the_context_leaves_but_not_below_the_floor(small_model):
    big = {"role": "user", "content": "word " * 700}

    fitted = fit([big], [small_model], max_tokens=4000)

    assert OUTPUT_FLOOR <= fitted.max_tokens < 4000
    assert count_prompt_tokens([big]) + fitted.max_tokens <= small_model.context_length


def test_a_message_longer_than_the_context_is_refused_not_cut(small_model):
    huge = {"role": "user", "content": "word " * 2000}

    with pytest.raises(ContextTooSmall) as refused:
        fit([SYSTEM, huge], [small_model], max_tokens=None)

    assert isinstance(refused.value, LimitExceeded)
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.http_status == 400
    assert "1,000" in str(refused.value)


def test_the_strictest_candidate_decides(small_model):
    roomy = AIModel.objects.create(
        slug="test/roomy", provider=Provider.OPENAI_COMPAT, upstream_id="fake-roomy", name="Roomy", context_length=64000
    )
    messages = long_history(40)

    assert fit(messages, [roomy], max_tokens=200).dropped == 0
    assert fit(messages, [roomy, small_model], max_tokens=200) == fit(messages, [small_model], max_tokens=200)


def test_a_model_of_unknown_context_gets_everything(upstream):
    unknown = AIModel.objects.create(
        slug="test/unknown", provider=Provider.OPENAI_COMPAT, upstream_id="fake-unknown", name="Unknown"
    )
    messages = long_history(40)

    assert fit(messages, [unknown], max_tokens=300).messages == messages


@pytest.fixture
def long_conversation(user, small_model):
    start_subscription(user, Plan.objects.get(slug="enterprise"))
    conversation = Conversation.objects.create(user=user, title="Long")
    for message in long_history(40):
        Message.objects.create(conversation=conversation, role=message["role"], content=message["content"])
    reply = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING
    )
    return conversation, reply


@pytest.mark.django_db(transaction=True)
async def test_the_upstream_receives_only_what_fits_and_the_reply_notes_where_it_starts(
    long_conversation, small_model, upstream
):
    from asgiref.sync import sync_to_async

    from chat import conversations

    conversation, reply = long_conversation
    history = await sync_to_async(conversations.history_for)(conversation, reply)
    generation = await sync_to_async(conversations.generation_for)(reply, user=conversation.user, model=small_model)

    await generation.complete()

    [request] = upstream.requests
    sent = request["body"]["messages"]
    assert len(sent) < len(history)
    assert sent[0] == SYSTEM and sent[-1] == history[-1]
    assert count_prompt_tokens(sent) + request["body"]["max_tokens"] <= small_model.context_length
    await reply.arefresh_from_db()
    first_sent = await Message.objects.aget(pk=reply.first_sent_id)
    assert {"role": first_sent.role, "content": first_sent.content} == sent[1]


@pytest.fixture
def small_session(user, small_model):
    """A session whose history no longer fits `small_model` (1,000 tokens)."""
    conversation = Conversation.objects.create(user=user, title="Long")
    for message in long_history(40)[1:-1]:
        Message.objects.create(conversation=conversation, role=message["role"], content=message["content"])
    return conversation


@pytest.mark.django_db(transaction=True)
async def test_the_rest_api_sends_what_fits_and_says_where_the_history_started(
    api_client, small_session, small_model, upstream
):
    response = await api_client.post(
        "/api/v1/chat/completions",
        {"message": "And the last question?", "model": small_model.slug, "session_id": small_session.pk},
    )

    assert response.status_code == 200, response.content
    stored = response.json()["message"]
    sent = upstream.requests[-1]["body"]["messages"]
    first_sent = await Message.objects.aget(pk=stored["first_sent_message_id"])
    assert sent[0] == {"role": first_sent.role, "content": first_sent.content}
    assert sent[-1] == {"role": "user", "content": "And the last question?"}
    assert count_prompt_tokens(sent) + upstream.requests[-1]["body"]["max_tokens"] <= small_model.context_length
    session = (await api_client.get(f"/api/v1/sessions/{small_session.pk}")).json()
    assert session["messages"][-1]["first_sent_message_id"] == first_sent.pk
    assert session["messages"][0]["first_sent_message_id"] is None


@pytest.mark.django_db(transaction=True)
async def test_a_message_too_long_for_the_context_is_refused_on_both_apis(api_client, small_model, upstream):
    huge = "word " * 2000

    stored = await api_client.post("/api/v1/chat/completions", {"message": huge, "model": small_model.slug})
    openai = await api_client.post(
        "/v1/chat/completions", {"model": small_model.slug, "messages": [{"role": "user", "content": huge}]}
    )

    for response in (stored, openai):
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "context_length_exceeded"
    assert upstream.requests == []


def test_the_page_marks_where_the_history_sent_starts(logged_in, small_session):
    first_sent = small_session.messages.order_by("-id")[5]
    Message.objects.create(
        conversation=small_session, role=Message.Role.ASSISTANT, content="Last reply", first_sent_id=first_sent.pk
    )

    html = logged_in.get(f"/chat/{small_session.pk}/").content.decode()

    marker = html.index('id="context-marker"')
    assert html.index(f'id="message-{first_sent.pk}"') > marker
    assert html.index(f'id="message-{first_sent.pk - 1}"') < marker
    assert html.count("Earlier messages are not sent to this model") == 2  # the marker and its template
