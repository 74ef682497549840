"""Everything that talks to Stripe: Checkout sessions (over its HTTP API with httpx) and verifying
the signature of its webhooks (HMAC-SHA256 of "<timestamp>.<body>" with the endpoint secret)."""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
from django.conf import settings

# Stripe's own libraries refuse events signed longer ago than this (replays).
SIGNATURE_TOLERANCE_SECONDS = 300


class StripeError(Exception):
    pass


class BadSignature(Exception):
    pass


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)


def create_checkout_session(*, user, plan, success_url: str, cancel_url: str) -> str:
    """A Checkout session for a monthly subscription to `plan`; returns the URL to send the person to."""
    cents = int(plan.monthly_price * 100)
    form = {
        "mode": "subscription",
        "success_url": success_url,
        "cancel_url": cancel_url,
        "customer_email": user.email,
        "client_reference_id": str(user.pk),
        "metadata[user_id]": str(user.pk),
        "metadata[plan]": plan.slug,
        "subscription_data[metadata][user_id]": str(user.pk),
        "subscription_data[metadata][plan]": plan.slug,
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": str(cents),
        "line_items[0][price_data][recurring][interval]": "month",
        "line_items[0][price_data][product_data][name]": f"AI Hub {plan.name}",
    }
    try:
        response = httpx.post(
            f"{settings.STRIPE_API_BASE}/v1/checkout/sessions",
            data=form,
            auth=(settings.STRIPE_SECRET_KEY, ""),
            timeout=15,
        )
    except httpx.TransportError as exc:
        raise StripeError(f"Stripe could not be reached ({type(exc).__name__}).") from exc
    if response.status_code != 200:
        message = response.json().get("error", {}).get("message", "") if response.content else ""
        raise StripeError(f"Stripe refused the checkout (HTTP {response.status_code}) {message}".strip())
    return response.json()["url"]


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header value for `payload` (what Stripe sends; used by tests and tools)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(payload: bytes, header: str, secret: str, now: float | None = None) -> None:
    """Raise BadSignature unless one v1 signature of the header matches and is recent."""
    parts = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [value for key, value in parts if key == "t"]
    signatures = [value for key, value in parts if key == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        raise BadSignature("malformed Stripe-Signature header")
    timestamp = int(timestamps[0])
    if abs((time.time() if now is None else now) - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise BadSignature("signature timestamp outside the tolerance")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise BadSignature("no matching signature")
