"""REQUIRE_STAFF_MFA: staff who have not set up two-factor sign-in are sent to set it up before the
admin and the ops pages (whatever else they may do as anyone else)."""

from __future__ import annotations

from functools import cache

from allauth.mfa.utils import is_mfa_enabled
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from aihub.async_middleware import SyncAndAsyncMiddleware

SET_UP_FIRST = "Staff pages need two-factor sign-in: set up an authenticator app first."


@cache
def staff_prefixes() -> tuple[str, ...]:
    return (reverse("admin:index"), reverse("ops:overview"))


def needs_second_factor(request, user) -> bool:
    """A staff member without an authenticator, on a staff page, while the setting requires one."""
    return (
        settings.REQUIRE_STAFF_MFA
        and request.path.startswith(staff_prefixes())
        and user.is_authenticated
        and user.is_staff
        and not is_mfa_enabled(user)
    )


def send_to_set_up(request) -> HttpResponseRedirect:
    messages.warning(request, SET_UP_FIRST)
    return HttpResponseRedirect(reverse("mfa_activate_totp"))


class StaffTwoFactorMiddleware(SyncAndAsyncMiddleware):
    """Only staff pages cost a query."""

    def handle(self, request):
        if request.path.startswith(staff_prefixes()) and needs_second_factor(request, request.user):
            return send_to_set_up(request)
        return self.get_response(request)

    async def ahandle(self, request):
        if request.path.startswith(staff_prefixes()):
            user = await request.auser()
            if await sync_to_async(needs_second_factor)(request, user):
                return send_to_set_up(request)
        return await self.get_response(request)
