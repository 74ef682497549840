from django.contrib import admin

from .models import Plan, Subscription, UpstreamAttempt, UsageRecord


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "monthly_price", "monthly_token_quota", "requests_per_minute", "tokens_per_minute",
                    "max_concurrent_streams", "free_models_only"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["user", "plan", "is_active", "current_period_start", "current_period_end"]
    list_filter = ["plan", "is_active"]
    search_fields = ["user__email"]
    raw_id_fields = ["user"]


class UpstreamAttemptInline(admin.TabularInline):
    model = UpstreamAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["provider", "model_slug", "outcome", "http_status", "latency_ms", "error"]


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "model_slug", "provider", "prompt_tokens", "completion_tokens", "cost",
                    "status", "ttft_ms", "latency_ms"]
    list_filter = ["status", "provider"]
    list_select_related = ["user"]
    search_fields = ["user__email", "model_slug"]
    date_hierarchy = "created_at"
    inlines = [UpstreamAttemptInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
