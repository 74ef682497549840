from __future__ import annotations

from django import forms

from chat.catalogue.lookup import configured_providers
from chat.conversations import MAX_SYSTEM_PROMPT_CHARS
from chat.models import AIModel

from .models import User


class ChatPreferencesForm(forms.ModelForm):
    """How the chat starts for this person."""

    custom_instructions = forms.CharField(
        required=False,
        max_length=MAX_SYSTEM_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Sent first with every chat request, before the conversation's own system prompt "
        "(who you are, how you like answers).",
    )

    class Meta:
        model = User
        fields = ["default_model", "custom_instructions"]
        labels = {"default_model": "Default model for new chats"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["default_model"]
        field.queryset = AIModel.objects.active().filter(provider__in=configured_providers())
        field.empty_label = "The model of my last chat"
        field.help_text = ""
