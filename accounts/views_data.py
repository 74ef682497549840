"""A person's own data: download all of it, or delete the account."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from billing.stripe_api import StripeError

from . import personal_data
from .deletion_forms import DeleteAccountForm


@require_GET
def export_data(request):
    response = HttpResponse(personal_data.export(request.user), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="aihub-account-{timezone.now():%Y-%m-%d}.zip"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "POST"])
def delete_account(request):
    form = DeleteAccountForm(request.POST if request.method == "POST" else None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            personal_data.delete_account(request.user)
        except StripeError:
            form.add_error(None, "Stripe could not cancel your subscription just now: nothing was deleted. Try again.")
        else:
            logout(request)
            messages.success(request, "Your account is deleted.")
            return redirect("landing")
    status = 422 if form.errors else 200
    return render(request, "accounts/delete_account.html", {"form": form}, status=status)
