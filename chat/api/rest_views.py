"""The REST API under /api/v1 (session login or API key): chats stored as conversations, sessions,
models and the caller's usage statistics."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import cast

from channels.db import database_sync_to_async
from django.http import HttpResponse, JsonResponse
from django.utils import timezone

from aihub.inputs import whole_number
from billing import outbox
from billing.limits import LimitExceeded
from billing.models import UsageRecord
from billing.rollups import usage
from chat import attachments, conversations, figures
from chat.catalogue.lookup import AUTO
from chat.conversations import MAX_MESSAGE_CHARS, Exchange, start_exchange
from chat.gateway import estimates
from chat.gateway.generation import Generation
from chat.models import AIModel, Conversation, Message

from .auth import Caller, allowed_model, authenticate_request
from .decorators import api_view
from .errors import ApiError, failure_error
from .file_views import files_to_send
from .model_list import model_list
from .streaming import complete, open_generation_stream, sse_event, sse_response
from .validation import parse_params, read_json_body

SESSIONS_PER_PAGE = 20
MAX_SESSIONS_PER_PAGE = 100
MAX_STATS_DAYS = 366
TITLE_CHARS = cast(int, Conversation._meta.get_field("title").max_length)
COST_PLACES = Decimal(10) ** -UsageRecord._meta.get_field("cost").decimal_places


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param=param)


def _int_query(request, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    value = whole_number(raw)
    if value is None or not low <= value <= high:
        raise _bad(f"'{name}' must be a whole number from {low} to {high}.", name)
    return value


async def _session_for(caller: Caller, session_id) -> Conversation:
    """The caller's own conversation; another user's is as missing as one that never existed."""
    if isinstance(session_id, bool) or not isinstance(session_id, int):
        raise _bad("'session_id' must be an integer.", "session_id", "invalid_type")
    conversation = await Conversation.objects.filter(pk=session_id, user=caller.user).afirst()
    if conversation is None:
        raise ApiError(404, f"Session {session_id} does not exist.", "session_not_found", param="session_id")
    return conversation


def _message_json(message: Message) -> dict:
    """A message with its request's figures (zero where there are none: the user's, or a refused reply)."""
    usage = message.usage
    prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "error": message.error or None,
        "model": message.model.slug if message.model else None,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "cost_usd": (usage.cost if usage else Decimal(0)).quantize(COST_PLACES),
        "first_sent_message_id": message.first_sent_id,
        "created_at": message.created_at,
    }


def _session_json(conversation: Conversation, totals: dict) -> dict:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model.slug if conversation.model else None,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "totals": {
            "requests": totals["requests"],
            "prompt_tokens": totals["input_tokens"],
            "completion_tokens": totals["output_tokens"],
            "total_tokens": totals["tokens"],
            "cost_usd": f"{Decimal(totals['cost']).quantize(COST_PLACES):f}",  # same figure on every database
        },
    }


async def _sessions_json(sessions: list[Conversation]) -> list[dict]:
    """The sessions with their totals (the sum of their replies' usage rows), in one query for all."""
    totals = await database_sync_to_async(figures.totals_by_conversation)([c.pk for c in sessions])
    return [_session_json(c, totals[c.pk]) for c in sessions]


def _query_exchange(request) -> dict:
    """GET /api/v1/chat/stream's query (EventSource can only GET): prompt, model, session_id."""
    if not request.GET.get("prompt", "").strip():
        raise ApiError(400, "'prompt' is required: the text to send.", "missing_required_parameter", param="prompt")
    data = {"message": request.GET["prompt"], "model": request.GET.get("model", AUTO)}
    if "session_id" in request.GET:
        session_id = whole_number(request.GET["session_id"])
        if session_id is None:
            raise _bad("'session_id' must be an integer.", "session_id", "invalid_type")
        data["session_id"] = session_id
    return data


def _exchange_fields(data: dict) -> tuple[str, str, dict]:
    """The message, the model's slug and the generation parameters of an exchange (or its estimate)."""
    text = data.get("message")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "'message' is required: the text to send.", "missing_required_parameter", param="message")
    if len(text) > MAX_MESSAGE_CHARS:
        raise _bad(f"'message' is longer than {MAX_MESSAGE_CHARS} characters.", "message")
    if "\x00" in text:  # PostgreSQL text cannot hold it: refused here, not by the database as a 500
        raise _bad("'message' holds a NUL character (\\u0000).", "message")
    slug = data.get("model", AUTO)
    if not isinstance(slug, str):
        raise _bad("'model' must be a string.", "model", "invalid_type")
    return text, slug, parse_params(data)


async def _exchange_inputs(caller: Caller, data: dict) -> tuple[str, dict, AIModel | None, Conversation | None, list]:
    """An exchange's (or its estimate's) message, parameters, model, session (None: a new one) and files, checked."""
    text, slug, params = _exchange_fields(data)
    model = await database_sync_to_async(allowed_model)(caller, slug)
    conversation = await _session_for(caller, data["session_id"]) if data.get("session_id") is not None else None
    return text, params, model, conversation, await files_to_send(caller, data.get("attachments"), model)


async def _start_exchange(request) -> Exchange:
    """Read the body (or a GET's query) and admit the request by the caller's plan, then store the user's
    message and an empty reply, in the given session or a new one. A refused request stores nothing."""
    if request.method == "GET":
        caller = await authenticate_request(request, allow_session=True, spends=True)
        data = _query_exchange(request)
    else:
        caller = await authenticate_request(request, allow_session=True)
        data = read_json_body(request)
    text, params, model, conversation, files = await _exchange_inputs(caller, data)
    try:
        return await start_exchange(
            user=caller.user,
            conversation=conversation,
            text=text.strip(),
            model=model,
            api_key=caller.api_key,
            params=params,
            files=files,
            admit_first=True,
        )
    except LimitExceeded as exc:  # refused by the plan: nothing was stored
        error = failure_error(exc)
        assert error is not None  # a plan's refusal always has its API error
        raise error from None


async def _stored_reply(reply: Message, generation: Generation) -> dict:
    """The reply as stored; one deleted meanwhile (with its session), or not readable (the database down as it
    ended: it is stored when its usage row leaves the outbox), as its request left it, with its usage."""
    try:
        stored = await Message.objects.select_related("model", "usage").filter(pk=reply.pk).afirst()
    except outbox.LEDGER_DOWN:
        stored = None
    if stored is None:
        stored = reply
        stored.content, stored.status, stored.error = generation.text, generation.status, generation.error
        stored.model, stored.usage = generation.trail.model or reply.model, generation.usage_record
    return _message_json(stored)


@api_view("POST")
async def chat_completion(request):
    """POST /api/v1/chat/completions: send a message in a session (new or given), get the stored reply."""
    exchange = await _start_exchange(request)
    await complete(exchange.generation)
    return JsonResponse(
        {"session_id": exchange.conversation.pk, "message": await _stored_reply(exchange.reply, exchange.generation)}
    )


async def _exchange_events(stream, first: str, conversation: Conversation, reply: Message, event_id: int | None):
    try:
        yield sse_event({"type": "start", "session_id": conversation.pk, "message_id": reply.pk}, event_id)
        if first:
            yield sse_event({"type": "delta", "content": first}, event_id)
        try:
            async for delta in stream.deltas():
                yield sse_event({"type": "delta", "content": delta}, event_id)
        except Exception:  # stored on the reply by the generation; reported in the final event
            pass
        end = {"type": "end", "session_id": conversation.pk, "message": await _stored_reply(reply, stream.generation)}
        yield sse_event(end, event_id)
        yield sse_event("[DONE]", event_id)
    finally:
        await stream.close()


@api_view("GET", "POST")
async def chat_stream(request):
    """POST /api/v1/chat/stream: like chat/completions, the reply streamed as SSE `data: {json}` events.
    GET ?prompt=&model=&session_id= is the same for EventSource; its events carry the reply's id."""
    if request.method == "GET" and "Last-Event-ID" in request.headers:
        # An EventSource reconnecting after the stream ended: 204 tells it to stop, rather than send
        # the prompt again.
        return HttpResponse(status=204)
    exchange = await _start_exchange(request)
    stream, first = await open_generation_stream(exchange.generation)
    event_id = exchange.reply.pk if request.method == "GET" else None
    return sse_response(_exchange_events(stream, first, exchange.conversation, exchange.reply, event_id))


def _title(data: dict) -> str:
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ApiError(400, "'title' is required: a non-empty string.", "missing_required_parameter", param="title")
    if len(title) > TITLE_CHARS:  # as sent, as the schema's maxLength reads it
        raise _bad(f"'title' is longer than {TITLE_CHARS} characters.", "title")
    if "\x00" in title:  # PostgreSQL text cannot hold it
        raise _bad("'title' holds a NUL character (\\u0000).", "title")
    return title.strip()


async def _new_session(request, caller: Caller) -> JsonResponse:
    """POST /api/v1/sessions {"title"?, "model"?}: an empty session, to send messages in later."""
    data = read_json_body(request) if request.body else {}
    conversation = Conversation(user=caller.user)
    if data.get("title") is not None:
        conversation.title = _title(data)
    slug = data.get("model", AUTO)
    if not isinstance(slug, str):
        raise _bad("'model' must be a string.", "model", "invalid_type")
    conversation.model = await database_sync_to_async(allowed_model)(caller, slug)
    await conversation.asave()
    [session] = await _sessions_json([conversation])
    return JsonResponse({**session, "messages": []}, status=201)


@api_view("GET", "POST")
async def session_list(request):
    """GET /api/v1/sessions?page=N&per_page=M: the caller's conversations, most recent first.
    POST: a new session."""
    caller = await authenticate_request(request, allow_session=True)
    if request.method == "POST":
        return await _new_session(request, caller)
    per_page = _int_query(request, "per_page", SESSIONS_PER_PAGE, 1, MAX_SESSIONS_PER_PAGE)
    page = _int_query(request, "page", 1, 1, 10**9)
    sessions = Conversation.objects.filter(user=caller.user).select_related("model")
    total = await sessions.acount()
    offset = (page - 1) * per_page
    data = await _sessions_json([c async for c in sessions[offset : offset + per_page]])
    return JsonResponse(
        {
            "object": "list",
            "data": data,
            "page": page,
            "per_page": per_page,
            "total": total,
            "has_more": offset + len(data) < total,
        }
    )


@api_view("GET", "PATCH", "DELETE")
async def session_detail(request, pk: int):
    """GET, PATCH ({"title"}) or DELETE /api/v1/sessions/{id}: only the caller's own."""
    caller = await authenticate_request(request, allow_session=True)
    conversation = await _session_for(caller, pk)
    if request.method == "DELETE":
        await conversation.adelete()
        return HttpResponse(status=204)
    if request.method == "PATCH":
        conversation.title = _title(read_json_body(request))
        await conversation.asave(update_fields=["title", "updated_at"])
    [session] = await _sessions_json([await Conversation.objects.select_related("model").aget(pk=conversation.pk)])
    session["messages"] = [
        _message_json(m) async for m in conversation.messages.on_path().select_related("model", "usage")
    ]
    return JsonResponse(session)


def _estimate(
    caller: Caller, model: AIModel | None, conversation: Conversation | None, text: str, files: list, params: dict
) -> dict:
    # Sent first, as the generation sends them: the owner's custom instructions and the session's system prompt.
    instructions = conversations.instructions_for(conversation or Conversation(user=caller.user))
    history = conversations.history_for(conversation, None) if conversation is not None else []
    # Files waiting in the composer count as they will be sent with the message (and are fitted with it).
    message = attachments.with_files({"role": "user", "content": text.strip()}, files, model)
    estimate = estimates.estimate(
        user=caller.user, model=model, messages=[*instructions, *history, message], params=params
    )
    return {
        "session_id": conversation.pk if conversation is not None else None,
        "prompt_tokens": estimate.prompt_tokens,
        "max_output_tokens": estimate.max_output_tokens,
        "messages_sent": estimate.messages_sent,
        "messages_dropped": estimate.messages_dropped,
        "cost_usd": {"min": f"{estimate.cost_min:.8f}", "max": f"{estimate.cost_max:.8f}"},
    }


@api_view("POST")
async def estimate(request):
    """POST /api/v1/estimate: what sending this message (with its files) would cost, before it is sent
    (nothing is stored). The files are checked as sending checks them: only the caller's unsent uploads."""
    caller = await authenticate_request(request, allow_session=True)
    data = read_json_body(request)
    text, params, model, conversation, files = await _exchange_inputs(caller, data)
    try:
        answer = await database_sync_to_async(_estimate)(caller, model, conversation, text, files, params)
    except LimitExceeded as refused:
        raise failure_error(refused) from None
    return JsonResponse({"object": "estimate", "model": data.get("model", AUTO), **answer})


@api_view("GET")
async def models(request):
    """GET /api/v1/models: the catalogue the caller may use."""
    caller = await authenticate_request(request, allow_session=True)
    return JsonResponse(await model_list(caller))


@api_view("GET")
async def stats(request):
    """GET /api/v1/stats?days=N: the caller's tokens, cost and requests, in total, by model and by day."""
    caller = await authenticate_request(request, allow_session=True)
    days = _int_query(request, "days", 30, 1, MAX_STATS_DAYS)
    until = timezone.now()
    since = (until - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    records = usage(user=caller.user).between(since)
    totals, by_model, by_day = await database_sync_to_async(
        lambda: (records.totals(), records.by_model().order_by("model_slug"), records.by_day().order_by("day"))
    )()
    return JsonResponse(
        {
            "since": since,
            "until": until,
            "totals": _stats_json(totals),
            "by_model": [{"model": row["model_slug"], **_stats_json(row)} for row in by_model],
            "by_day": [{"day": row["day"], **_stats_json(row)} for row in by_day],
        }
    )


def _stats_json(figures: dict) -> dict:
    """The usage figures under the API's names (OpenAI's token names, cost in USD)."""
    return {
        "requests": figures["requests"],
        "prompt_tokens": figures["input_tokens"],
        "completion_tokens": figures["output_tokens"],
        "total_tokens": figures["tokens"],
        "cost_usd": Decimal(figures["cost"]).quantize(COST_PLACES),  # same figure on every database
    }
