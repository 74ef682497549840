from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from .models import EnterpriseInquiry

MAX_RANGE_DAYS = 366


class EnterpriseInquiryForm(forms.ModelForm):
    class Meta:
        model = EnterpriseInquiry
        fields = ["company", "contact_email", "expected_monthly_tokens", "message"]
        widgets = {"message": forms.Textarea(attrs={"rows": 5})}
        labels = {"expected_monthly_tokens": "Expected tokens per month"}


class DateRangeForm(forms.Form):
    """A date range (UTC days, both included); the last 30 days by default."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}), required=False)
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}), required=False)

    def clean(self):
        data = super().clean()
        today = timezone.now().date()
        data["end"] = data.get("end") or today
        data["start"] = data.get("start") or data["end"] - timedelta(days=29)
        if data["start"] > data["end"]:
            raise forms.ValidationError("The start date must come before the end date.")
        if (data["end"] - data["start"]).days >= MAX_RANGE_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_RANGE_DAYS} days.")
        return data
