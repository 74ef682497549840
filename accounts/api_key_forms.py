from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils import timezone

from chat.catalogue.lookup import configured_providers
from chat.models import AIModel


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'CI' or 'my laptop'.")
    expires_on = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional. The key stops working at the start of that day (UTC).",
    )
    allowed_models = forms.ModelMultipleChoiceField(
        queryset=AIModel.objects.none(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="Optional. Leave empty to allow every model (and 'auto').",
    )
    monthly_budget = forms.DecimalField(
        label="Monthly budget (USD)",
        required=False,
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        help_text="Optional. Requests that would spend more than this per billing period are refused.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].queryset = (
            AIModel.objects.active().filter(provider__in=configured_providers()).order_by("slug")
        )

    def clean_expires_on(self):
        expires_on = self.cleaned_data["expires_on"]
        if expires_on is not None and expires_on <= timezone.now().date():
            raise forms.ValidationError("Pick a day after today.")
        return expires_on
