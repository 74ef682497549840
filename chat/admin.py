from django.contrib import admin

from .models import AIModel, Conversation, Message, SharedLink


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "provider", "input_price_per_m", "output_price_per_m", "is_active", "auto_priority"]
    list_filter = ["provider", "kind", "is_active", "supports_tools", "supports_response_format"]
    search_fields = ["slug", "name", "upstream_id"]
    list_editable = ["is_active", "auto_priority"]
    autocomplete_fields = ["fallback"]


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["role", "status", "content", "model", "usage"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "model", "created_at", "updated_at"]
    list_select_related = ["user", "model"]
    search_fields = ["title", "user__email"]
    date_hierarchy = "created_at"
    raw_id_fields = ["user"]
    inlines = [MessageInline]


@admin.register(SharedLink)
class SharedLinkAdmin(admin.ModelAdmin):
    list_display = ["title", "conversation", "created_at"]
    list_select_related = ["conversation"]
    readonly_fields = ["token", "snapshot"]
    raw_id_fields = ["conversation"]
