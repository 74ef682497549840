"""Stripe's webhook endpoint: signature verified, then handled once per event."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from aihub.inputs import BadJson, parse_json

from . import stripe_api
from .stripe_webhooks import StripeWebhook

logger = logging.getLogger(__name__)


def _is_event(event) -> bool:
    """The shape the handlers read: string id and type, and an object under data."""
    return (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type", ""), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    )


@login_not_required
@csrf_exempt  # Stripe cannot send a CSRF token; the signature proves the sender instead
@require_POST
def webhook(request):
    if not stripe_api.configured():
        raise Http404("Payments are not set up on this server.")
    try:
        stripe_api.verify_signature(
            request.body, request.headers.get("Stripe-Signature", ""), settings.STRIPE_WEBHOOK_SECRET
        )
    except stripe_api.BadSignature as exc:
        return JsonResponse({"error": f"invalid signature: {exc}"}, status=400)
    try:
        event = parse_json(request.body)
    except BadJson:
        event = None
    if not _is_event(event):
        return JsonResponse({"error": "the body is not a Stripe event"}, status=400)
    try:
        result = StripeWebhook().handle(event)
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
        # A signed event with a field of a type or value its handler cannot read: refused (nothing
        # was applied: the handler's transaction is rolled back), logged for the operators.
        logger.warning("Stripe event %s (%s) could not be read: %r", event["id"], event.get("type"), exc)
        return JsonResponse({"error": "the event has a field of an unexpected type or value"}, status=400)
    return JsonResponse({"result": result})
