"""The billing page: plan, period, usage against quota, and changing plans (with Stripe when set up)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.mail import mail_admins
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import plan_changes, rollups, stripe_api
from .forms import EnterpriseInquiryForm
from .models import Plan
from .subscriptions import current_subscription


def _share(used, limit) -> int | None:
    """Percent of a quota used (capped at 100), or None for an unlimited one."""
    if limit is None:
        return None
    if not limit:
        return 100 if used else 0
    return min(100, round(100 * used / limit))


@require_GET
def index(request):
    subscription = current_subscription(request.user)
    plan = subscription.plan
    usage = rollups.usage(user=request.user).between(subscription.current_period_start).totals()
    plans = list(Plan.objects.filter(is_public=True))
    kinds = [(p, plan_changes.kind_of_change(subscription, p)) for p in plans]
    return render(
        request,
        "billing/index.html",
        {
            "subscription": subscription,
            "plan": plan,
            "usage": usage,
            "token_share": _share(usage["tokens"], plan.monthly_token_quota),
            "credit_share": _share(usage["cost"], plan.monthly_credit_quota),
            "plans": [
                (p, kind, plan_changes.upgrade_route(subscription, p) if kind == plan_changes.UPGRADE else None)
                for p, kind in kinds
            ],
            "stripe": stripe_api.configured(),
            "self_service": settings.BILLING_SELF_SERVICE_UPGRADES,
            "pending_request": plan_changes.pending_request(request.user),
        },
    )


@require_http_methods(["GET", "POST"])
def change(request, slug):
    plan = get_object_or_404(Plan, slug=slug, is_public=True)
    try:
        subscription, kind = plan_changes.check_change(request.user, plan)
    except plan_changes.PlanChangeRefused as exc:
        messages.error(request, str(exc))
        return redirect("billing:index")
    route = plan_changes.upgrade_route(subscription, plan) if kind == plan_changes.UPGRADE else None
    paid_upgrade = route == plan_changes.CHECKOUT
    context = {"subscription": subscription, "plan": plan, "kind": kind, "route": route, "paid_upgrade": paid_upgrade}
    if request.method == "POST":
        if paid_upgrade:
            return _checkout(request, plan)
        try:
            plan_changes.do_change(request.user, plan)
        except plan_changes.PlanChangeRefused as exc:
            messages.error(request, str(exc))
            return render(request, "billing/change.html", context, status=403)
        except stripe_api.StripeError as exc:
            messages.error(request, f"Your plan was not changed: {exc}")
            return redirect("billing:index")
        if kind == plan_changes.UPGRADE:
            charged = " Stripe charged the prorated difference." if route == plan_changes.STRIPE_UPDATE else ""
            messages.success(request, f"You are now on the {plan.name} plan.{charged}")
        else:
            messages.success(
                request,
                f"Your plan changes to {plan.name} on "
                f"{subscription.current_period_end:%-d %b %Y}, at the end of this period.",
            )
        return redirect("billing:index")
    return render(request, "billing/change.html", context)


@require_POST
def request_plan(request, slug):
    plan = get_object_or_404(Plan, slug=slug, is_public=True)
    try:
        plan_changes.request_plan(
            request.user,
            plan,
            review_url=request.build_absolute_uri(reverse("admin:billing_planrequest_changelist")),
        )
    except plan_changes.PlanChangeRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Your request for the {plan.name} plan was sent: an operator will review it and write to you."
        )
    return redirect("billing:index")


@require_POST
def withdraw_request(request):
    if plan_changes.withdraw_request(request.user):
        messages.success(request, "Your plan request was withdrawn.")
    return redirect("billing:index")


def _checkout(request, plan):
    try:
        url = stripe_api.create_checkout_session(
            user=request.user,
            plan=plan,
            customer_id=current_subscription(request.user).stripe_customer_id,
            success_url=request.build_absolute_uri(reverse("billing:checkout_done")),
            cancel_url=request.build_absolute_uri(reverse("billing:index")),
        )
    except stripe_api.StripeError as exc:
        messages.error(request, f"The payment page could not be opened: {exc} Please try again in a moment.")
        return redirect("billing:index")
    return redirect(url)


@require_GET
def checkout_done(request):
    return render(request, "billing/checkout_done.html", {"subscription": current_subscription(request.user)})


@require_http_methods(["GET", "POST"])
def cancel(request):
    subscription = current_subscription(request.user)
    free = Plan.objects.get(slug="free")
    if subscription.plan_id == free.pk:
        messages.error(request, "You are on the Free plan: there is nothing to cancel.")
        return redirect("billing:index")
    if request.method == "POST":
        try:
            plan_changes.do_cancel(request.user)
        except stripe_api.StripeError as exc:
            messages.error(request, f"Your plan was not cancelled: {exc}")
            return redirect("billing:index")
        messages.success(
            request,
            f"Your {subscription.plan.name} plan ends on "
            f"{subscription.current_period_end:%-d %b %Y}; you then move to Free.",
        )
        return redirect("billing:index")
    return render(request, "billing/cancel.html", {"subscription": subscription, "free": free})


@require_POST
def keep(request):
    try:
        plan_changes.do_keep_current_plan(request.user)
    except stripe_api.StripeError as exc:
        messages.error(request, f"The scheduled change stays: {exc}")
    else:
        messages.success(request, "Your plan stays as it is.")
    return redirect("billing:index")


@require_POST
def portal(request):
    """Stripe's Customer Portal: cards, invoices and receipts."""
    customer_id = current_subscription(request.user).stripe_customer_id
    if not (stripe_api.configured() and customer_id):
        messages.error(request, "There is no card payment account to manage.")
        return redirect("billing:index")
    try:
        url = stripe_api.create_portal_session(
            customer_id=customer_id, return_url=request.build_absolute_uri(reverse("billing:index"))
        )
    except stripe_api.StripeError as exc:
        messages.error(request, f"The billing portal could not be opened: {exc}")
        return redirect("billing:index")
    return redirect(url)


@require_http_methods(["GET", "POST"])
def enterprise(request):
    form = EnterpriseInquiryForm(request.POST or None, initial={"contact_email": request.user.email})
    if request.method == "POST" and form.is_valid():
        form.instance.user = request.user
        inquiry = form.save()
        mail_admins(
            f"Enterprise enquiry: {inquiry.company}",
            f"{inquiry.company} ({inquiry.contact_email}, account {request.user.email}) writes:\n\n"
            f"{inquiry.message}\n\n"
            f"Listed in admin: {request.build_absolute_uri(reverse('admin:billing_enterpriseinquiry_changelist'))}\n",
            fail_silently=True,
        )
        messages.success(request, "Thank you: our team will write to you within two working days.")
        return redirect("billing:index")
    return render(request, "billing/enterprise.html", {"form": form}, status=422 if form.errors else 200)
