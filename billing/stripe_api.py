"""Everything that talks to Stripe over its HTTP API (httpx): Checkout for the first purchase, then
changes to the customer's one subscription, the Customer Portal; and verifying the signature of its
webhooks (HMAC-SHA256 of "<timestamp>.<body>" with the endpoint secret)."""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
from django.conf import settings

from aihub.inputs import whole_number

# Stripe's own libraries refuse events signed longer ago than this (replays).
SIGNATURE_TOLERANCE_SECONDS = 300


class StripeError(Exception):
    pass


class BadSignature(Exception):
    pass


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)


def _call(method: str, path: str, form: dict | None = None) -> dict:
    """One request to Stripe's API; StripeError with Stripe's own message when it fails."""
    try:
        response = httpx.request(
            method, f"{settings.STRIPE_API_BASE}{path}", data=form, auth=(settings.STRIPE_SECRET_KEY, ""), timeout=15
        )
    except httpx.TransportError as exc:
        raise StripeError(f"Stripe could not be reached ({type(exc).__name__}).") from exc
    if response.status_code != 200:
        try:
            message = response.json().get("error", {}).get("message", "")
        except ValueError:
            message = ""
        raise StripeError(f"Stripe refused the request (HTTP {response.status_code}) {message}".strip())
    return response.json()


def _cents(plan) -> str:
    return str(int(plan.monthly_price * 100))


def create_checkout_session(*, user, plan, success_url: str, cancel_url: str, customer_id: str = "") -> str:
    """A Checkout session for a monthly subscription to `plan`; returns the URL to send the person to."""
    form = {
        "mode": "subscription",
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": str(user.pk),
        "metadata[user_id]": str(user.pk),
        "metadata[plan]": plan.slug,
        "subscription_data[metadata][user_id]": str(user.pk),
        "subscription_data[metadata][plan]": plan.slug,
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": _cents(plan),
        "line_items[0][price_data][recurring][interval]": "month",
        "line_items[0][price_data][product_data][name]": "AI Hub",
    }
    # A returning customer keeps one Stripe customer (its cards and invoices) across subscriptions.
    form.update({"customer": customer_id} if customer_id else {"customer_email": user.email})
    return _call("POST", "/v1/checkout/sessions", form)["url"]


def change_price(subscription_id: str, plan, *, charge_now: bool) -> dict:
    """Move the one subscription to `plan`'s price. charge_now (upgrades): Stripe invoices the prorated
    difference at once and refuses the change if that payment fails; otherwise (downgrades) nothing
    is prorated and the next renewal is at the new price."""
    item = _call("GET", f"/v1/subscriptions/{subscription_id}")["items"]["data"][0]
    form = {
        "items[0][id]": item["id"],
        "items[0][price_data][currency]": "usd",
        "items[0][price_data][product]": item["price"]["product"],
        "items[0][price_data][unit_amount]": _cents(plan),
        "items[0][price_data][recurring][interval]": "month",
        "metadata[plan]": plan.slug,
        "cancel_at_period_end": "false",
        "proration_behavior": "always_invoice" if charge_now else "none",
    }
    if charge_now:
        form["payment_behavior"] = "error_if_incomplete"
    return _call("POST", f"/v1/subscriptions/{subscription_id}", form)


def cancel_at_period_end(subscription_id: str, cancel: bool = True) -> dict:
    return _call("POST", f"/v1/subscriptions/{subscription_id}", {"cancel_at_period_end": str(cancel).lower()})


def create_portal_session(*, customer_id: str, return_url: str) -> str:
    """The Customer Portal (cards, invoices, receipts) for this customer; returns its URL."""
    return _call("POST", "/v1/billing_portal/sessions", {"customer": customer_id, "return_url": return_url})["url"]


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
    timestamp = whole_number(timestamps[0]) if len(timestamps) == 1 else None
    if timestamp is None or not signatures:
        raise BadSignature("malformed Stripe-Signature header")
    if abs((time.time() if now is None else now) - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise BadSignature("signature timestamp outside the tolerance")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise BadSignature("no matching signature")
