from django import forms
from django.contrib import admin, messages

from .catalogue.provider_keys import ProviderKeysUnavailable
from .catalogue.sync import CatalogueError, refresh_endpoint
from .models import AIModel, Conversation, Message, ProviderEndpoint, SharedLink


class ProviderEndpointForm(forms.ModelForm):
    base_url = forms.URLField(
        assume_scheme="https", max_length=500, help_text=ProviderEndpoint.base_url.field.help_text
    )
    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted (PROVIDER_KEYS_SECRET), never shown again. Leave empty to keep the current one.",
    )
    remove_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = ProviderEndpoint
        fields = ["name", "kind", "base_url", "is_active"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("api_key"):
            try:
                self.instance.set_api_key(cleaned["api_key"])
            except ProviderKeysUnavailable as exc:
                self.add_error("api_key", str(exc))
        elif cleaned.get("remove_api_key"):
            self.instance.set_api_key("")
        return cleaned


@admin.register(ProviderEndpoint)
class ProviderEndpointAdmin(admin.ModelAdmin):
    form = ProviderEndpointForm
    list_display = ["name", "kind", "base_url", "is_active", "has_key", "updated_at"]
    list_filter = ["kind", "is_active"]
    actions = ["import_models"]

    @admin.display(boolean=True, description="key")
    def has_key(self, endpoint):
        return bool(endpoint.api_key_encrypted)

    @admin.action(description="Import the models these providers list")
    def import_models(self, request, queryset):
        for endpoint in queryset:
            try:
                count = refresh_endpoint(endpoint)
            except (CatalogueError, ProviderKeysUnavailable) as exc:
                self.message_user(request, f"{endpoint.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{endpoint.name}: {count} models imported as {endpoint.name}/...")


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "provider", "input_price_per_m", "output_price_per_m", "is_active", "auto_priority"]
    list_filter = ["provider", "kind", "is_active", "supports_tools", "supports_response_format"]
    search_fields = ["slug", "name", "upstream_id"]
    list_editable = ["is_active", "auto_priority"]
    autocomplete_fields = ["fallback"]


class MessageInline(admin.TabularInline):
    model = Message
    fields = readonly_fields = ("role", "status", "on_path", "content", "model", "usage")
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
