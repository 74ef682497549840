"""A stand-in for Stripe on 127.0.0.1 (real HTTP both ways): the API calls the app makes (Checkout
sessions, one subscription per customer with one item, billing portal sessions) are answered and
recorded; what happens on Stripe's side (a Checkout paid, a renewal paid or declined, a subscription
ending) is told to the app the way Stripe does it, as webhook events signed with the endpoint secret,
queued and sent by `send_events()` to the app's live endpoint."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx

from aihub.testing import send_json
from billing import stripe_api

PERIOD = timedelta(days=30)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class FakeStripe:
    def __init__(self, secret: str, *, refuse_with: int | None = None):
        self.secret = secret
        self.refuse_with = refuse_with  # answer every API call with this HTTP error
        self.decline_cards = False  # charges (prorations) fail like a declined card
        self.webhook_url = ""
        self.calls: list[dict] = []
        self.sessions: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.queued: list[dict] = []
        self.sent: list[tuple[dict, int, dict]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer("GET", {})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                self._answer("POST", {k: v[0] for k, v in parse_qs(body).items()})

            def _answer(self, method, form):
                call = {"method": method, "path": self.path, "auth": self.headers.get("Authorization"), "form": form}
                with fake._lock:
                    fake.calls.append(call)
                    status, payload = fake._api(method, self.path, form)
                send_json(self, status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    # The API the app calls.

    def _api(self, method: str, path: str, form: dict) -> tuple[int, dict]:
        if self.refuse_with:
            return self.refuse_with, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        if (method, path) == ("POST", "/v1/checkout/sessions"):
            session_id = self._id("cs")
            self.sessions[session_id] = form
            return 200, {"id": session_id, "url": f"https://checkout.stripe.test/c/pay/{session_id}"}
        if (method, path) == ("POST", "/v1/billing_portal/sessions"):
            return 200, {"id": self._id("bps"), "url": f"https://billing.stripe.test/p/session/{form['customer']}"}
        match = re.fullmatch(r"/v1/subscriptions/([\w]+)", path)
        if match and match[1] in self.subscriptions:
            subscription = self.subscriptions[match[1]]
            return (200, subscription) if method == "GET" else self._update(subscription, form)
        return 404, {"error": {"type": "invalid_request_error", "message": f"No such resource: {path}"}}

    def _update(self, subscription: dict, form: dict) -> tuple[int, dict]:
        item = subscription["items"]["data"][0]
        amount = form.get("items[0][price_data][unit_amount]")
        if amount is not None:
            if (
                form.get("items[0][id]") != item["id"]
                or form.get("items[0][price_data][product]") != item["price"]["product"]
            ):
                return 400, {"error": {"type": "invalid_request_error", "message": "No such subscription item"}}
            old, new = item["price"]["unit_amount"], int(amount)
            if form.get("proration_behavior") == "always_invoice" and new > old:
                if self.decline_cards:
                    return 402, {
                        "error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
                    }
                left = (subscription["current_period_end"] - time.time()) / PERIOD.total_seconds()
                self._invoice(
                    subscription,
                    "subscription_update",
                    round((new - old) * left),
                    paid=True,
                    period=(int(time.time()), subscription["current_period_end"]),
                )
            item["price"] = {"id": self._id("price"), "product": item["price"]["product"], "unit_amount": new}
        if "metadata[plan]" in form:
            subscription["metadata"]["plan"] = form["metadata[plan]"]
        if "cancel_at_period_end" in form:
            subscription["cancel_at_period_end"] = form["cancel_at_period_end"] == "true"
        self._queue("customer.subscription.updated", subscription)
        return 200, subscription

    # What happens on Stripe's side.

    def pay_checkout(self, session_id: str | None = None, *, period_start: datetime | None = None) -> dict:
        """The person pays the (last) Checkout session: a customer and its subscription exist."""
        with self._lock:
            session_id = session_id or list(self.sessions)[-1]
            form = self.sessions[session_id]
            start = _epoch(period_start) if period_start else int(time.time())
            customer = form.get("customer") or self._id("cus")
            subscription = {
                "id": self._id("sub"),
                "object": "subscription",
                "customer": customer,
                "status": "active",
                "cancel_at_period_end": False,
                "current_period_start": start,
                "current_period_end": start + int(PERIOD.total_seconds()),
                "metadata": {
                    "user_id": form["subscription_data[metadata][user_id]"],
                    "plan": form["subscription_data[metadata][plan]"],
                },
                "items": {
                    "data": [
                        {
                            "id": self._id("si"),
                            "price": {
                                "id": self._id("price"),
                                "product": self._id("prod"),
                                "unit_amount": int(form["line_items[0][price_data][unit_amount]"]),
                            },
                        }
                    ]
                },
            }
            self.subscriptions[subscription["id"]] = subscription
            self._queue(
                "checkout.session.completed",
                {
                    "id": session_id,
                    "object": "checkout.session",
                    "payment_status": "paid",
                    "customer": customer,
                    "subscription": subscription["id"],
                    "metadata": {"user_id": form["metadata[user_id]"], "plan": form["metadata[plan]"]},
                },
            )
            self._queue("customer.subscription.created", subscription)
            self._invoice(subscription, "subscription_create", self._price(subscription), paid=True)
            return subscription

    def renew(self, subscription_id: str, *, paid: bool = True) -> None:
        """The period ends: cancelled at its end, the subscription ends; otherwise the next period is
        invoiced, and paid or declined (then past due)."""
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            if subscription["cancel_at_period_end"]:
                subscription["status"] = "canceled"
                self._queue("customer.subscription.deleted", subscription)
                return
            subscription["current_period_start"] = subscription["current_period_end"]
            subscription["current_period_end"] += int(PERIOD.total_seconds())
            self._invoice(subscription, "subscription_cycle", self._price(subscription), paid=paid)
            if not paid:
                subscription["status"] = "past_due"
                self._queue("customer.subscription.updated", subscription)

    def recover(self, subscription_id: str) -> None:
        """A later retry of the past-due invoice succeeds."""
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            invoice = next(
                e["data"]["object"]
                for e in reversed(self.queued + [s[0] for s in self.sent])
                if e["type"] == "invoice.payment_failed"
            )
            self._queue("invoice.paid", {**invoice, "status": "paid", "amount_paid": invoice["amount_due"]})
            subscription["status"] = "active"
            self._queue("customer.subscription.updated", subscription)

    def end(self, subscription_id: str) -> None:
        """Stripe ends the subscription now (unpaid after its retries, or cancelled in the portal)."""
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            subscription["status"] = "canceled"
            self._queue("customer.subscription.deleted", subscription)

    @staticmethod
    def _price(subscription: dict) -> int:
        return subscription["items"]["data"][0]["price"]["unit_amount"]

    def _invoice(self, subscription: dict, reason: str, amount: int, *, paid: bool, period=None) -> None:
        invoice_id = self._id("in")
        start, end = period or (subscription["current_period_start"], subscription["current_period_end"])
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "number": f"AIHUB-{invoice_id.split('_')[1].zfill(4)}",
            "customer": subscription["customer"],
            "subscription": subscription["id"],
            "billing_reason": reason,
            "status": "paid" if paid else "open",
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            "currency": "usd",
            "created": int(time.time()),
            "hosted_invoice_url": f"https://invoice.stripe.test/i/{invoice_id}",
            "lines": {"data": [{"amount": amount, "period": {"start": start, "end": end}}]},
        }
        self._queue("invoice.paid" if paid else "invoice.payment_failed", invoice)

    def _queue(self, event_type: str, obj: dict) -> None:
        # A copy: the event shows the object as it was when the event happened.
        self.queued.append({"id": self._id("evt"), "type": event_type, "data": {"object": json.loads(json.dumps(obj))}})

    # Delivery.

    def deliver(self, event: dict) -> tuple[int, dict]:
        payload = json.dumps(event).encode()
        response = httpx.post(
            self.webhook_url,
            content=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": stripe_api.sign(payload, self.secret)},
            timeout=30,
        )
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        self.sent.append((event, response.status_code, answer))
        return response.status_code, answer

    def send_events(self) -> list[tuple[str, int, str]]:
        """Send the queued events in order; (type, HTTP status, result) of each."""
        with self._lock:
            events, self.queued = self.queued, []
        return [(event["type"], *self._result(self.deliver(event))) for event in events]

    def send_again(self) -> list[tuple[str, int, str]]:
        """Deliver every event already sent once more (Stripe retries deliveries)."""
        return [(event["type"], *self._result(self.deliver(event))) for event, _, _ in list(self.sent)]

    @staticmethod
    def _result(answer: tuple[int, dict]) -> tuple[int, str]:
        return answer[0], answer[1].get("result", "")

    def api_calls(self, method: str, path_start: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method and c["path"].startswith(path_start)]
