from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from billing.rollups import usage
from billing.subscriptions import current_subscription
from chat.models import SharedLink

from .models import User
from .preference_forms import ChatPreferencesForm


@require_GET
def profile(request):
    return _profile_page(request, ChatPreferencesForm(instance=request.user))


# The theme button cycles: as the device, then dark, then light.
NEXT_THEME = {
    User.Theme.SYSTEM: User.Theme.DARK,
    User.Theme.DARK: User.Theme.LIGHT,
    User.Theme.LIGHT: User.Theme.SYSTEM,
}


@require_POST
def switch_theme(request):
    """The next theme, saved for this person; back to the page the button was on."""
    request.user.theme = NEXT_THEME.get(request.user.theme, User.Theme.SYSTEM)
    request.user.save(update_fields=["theme"])
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("profile")
    return redirect(back)


@require_POST
def chat_preferences(request):
    form = ChatPreferencesForm(request.POST, instance=request.user)
    if not form.is_valid():
        return _profile_page(request, form, status=422)
    form.save()
    messages.success(request, "Chat preferences saved.")
    return redirect("profile")


def _profile_page(request, preferences_form, status=200):
    subscription = current_subscription(request.user)
    this_period = usage(user=request.user).between(subscription.current_period_start)
    return render(
        request,
        "accounts/profile.html",
        {
            "subscription": subscription,
            "plan": subscription.plan,
            "usage": this_period.totals(),
            "by_model": this_period.by_model().order_by("-cost", "model_slug"),
            "preferences_form": preferences_form,
            "shared_links": SharedLink.objects.filter(conversation__user=request.user),
            "mfa_enabled": is_mfa_enabled(request.user),
        },
        status=status,
    )
