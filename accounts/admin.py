from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.admin.views.main import ERROR_FLAG
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing.models import usage_figures
from billing.rollups import usage

from . import api_keys, personal_data
from .models import ApiKey, AuditEntry, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "date_joined", "deleted_at"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined", "deleted_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    readonly_fields = ["deleted_at"]
    list_filter = [*BaseUserAdmin.list_filter, "deleted_at"]
    actions = ["delete_accounts"]

    def has_delete_permission(self, request, obj=None):
        return False  # a deleted row would take its usage and invoices with it: the action below keeps them

    @admin.action(description="Delete the selected accounts (their data goes; usage and invoices are kept)")
    def delete_accounts(self, request, queryset):
        for user in queryset.filter(deleted_at__isnull=True):
            personal_data.delete_account(user, actor=request.user)
        self.message_user(request, "Deleted; the rows stay as anonymous tombstones for accounting.")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued on the API keys page or by `manage.py create_api_key`; the secret is never here."""

    list_display = [
        "name",
        "prefix",
        "user",
        "status",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "requests",
        "tokens",
        "cost",
    ]
    list_filter = ["revoked_at", "expires_at"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__email"]
    fields = [
        "user",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "allowed_models",
        "monthly_budget",
        "usage",
    ]
    readonly_fields = ["user", "prefix", "created_at", "last_used_at", "revoked_at", "usage"]
    filter_horizontal = ["allowed_models"]
    actions = ["revoke_keys"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                **usage_figures(
                    ("requests", "tokens", "cost"), through="usage_daily__", prefix="usage_", rolled_up=True
                )
            )
        )

    def has_add_permission(self, request):
        return False

    @admin.display(ordering="usage_requests")
    def requests(self, obj):
        return obj.usage_requests

    @admin.display(ordering="usage_tokens")
    def tokens(self, obj):
        return obj.usage_tokens

    @admin.display(ordering="usage_cost", description="cost (USD)")
    def cost(self, obj):
        return obj.usage_cost

    @admin.display(description="usage (all time)")
    def usage(self, obj):
        rows = usage(api_key=obj).by_model().order_by("-cost", "model_slug")
        link = format_html(
            '<a href="{}?api_key__id__exact={}">All usage records of this key</a>',
            reverse("admin:billing_usagerecord_changelist"),
            obj.pk,
        )
        lines = format_html_join(
            "",
            "<li>{}: {} requests, {} tokens, ${}</li>",
            ((r["model_slug"], r["requests"], r["tokens"], r["cost"]) for r in rows),
        )
        return format_html("<ul>{}</ul>{}", lines or "no requests yet", link)

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request, queryset):
        count = api_keys.revoke(queryset, actor=request.user)
        self.message_user(request, f"{count} key(s) revoked; they are refused from the next request on.")

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        api_keys.keys_changed()  # expiry or allowed models edited: drop every process's cached copy


class ReadOnlyAdmin(admin.ModelAdmin):
    """A log: viewed, never written or edited here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        # A NUL in a filter (?purpose=%00) reaches PostgreSQL, which refuses it (a 500): answered as the
        # admin answers any filter it cannot apply.
        if any("\x00" in key + "".join(values) for key, values in request.GET.lists()):
            return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
        return super().changelist_view(request, extra_context)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "target_repr", "target_type", "target_id", "detail"]
    list_filter = ["action", "created_at"]
    list_select_related = ["actor"]
    search_fields = ["actor__email", "target_repr", "target_id"]
    date_hierarchy = "created_at"


@admin.register(LogEntry)
class LogEntryAdmin(ReadOnlyAdmin):
    """Django's own log of admin edits (mirrored one by one into the audit log; bulk deletions only here)."""

    list_display = ["action_time", "user", "content_type", "object_repr", "action_flag", "change_message"]
    list_filter = ["action_flag", "content_type"]
    list_select_related = ["user", "content_type"]
    search_fields = ["user__email", "object_repr"]
    date_hierarchy = "action_time"
