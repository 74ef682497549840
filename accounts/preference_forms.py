from __future__ import annotations

from django import forms

from chat.catalogue.lookup import configured_providers
from chat.models import AIModel

from .models import User


class ChatPreferencesForm(forms.ModelForm):
    """How the chat starts for this person."""

    class Meta:
        model = User
        fields = ["default_model"]
        labels = {"default_model": "Default model for new chats"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["default_model"]
        field.queryset = AIModel.objects.active().filter(provider__in=configured_providers())
        field.empty_label = "The model of my last chat"
        field.help_text = ""
