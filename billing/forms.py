from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.utils import timezone

from .models import EnterpriseInquiry

MAX_RANGE_DAYS = 366
DEFAULT_DAYS = 30


class EnterpriseInquiryForm(forms.ModelForm):
    class Meta:
        model = EnterpriseInquiry
        fields = ["company", "contact_email", "expected_monthly_tokens", "message"]
        widgets = {"message": forms.Textarea(attrs={"rows": 5})}
        labels = {"expected_monthly_tokens": "Expected tokens per month"}


class DateRangeForm(forms.Form):
    """A date range (UTC days, both included); the last 30 days by default."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))

    @classmethod
    def from_query(cls, query) -> DateRangeForm:
        """Bound to the query string, the default dates filled in where it has none (so they show)."""
        data = query.copy()
        today = timezone.now().date()
        if not data.get("end"):
            data["end"] = today.isoformat()
        if not data.get("start"):
            try:
                end = date.fromisoformat(data["end"])
            except ValueError:
                end = today  # the end date's own error is shown
            data["start"] = (end - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        return cls(data)

    def clean(self):
        data = super().clean()
        if "start" not in data or "end" not in data:
            return data  # a field error already says what is wrong
        if data["start"] > data["end"]:
            raise forms.ValidationError("The start date must come before the end date.")
        if (data["end"] - data["start"]).days >= MAX_RANGE_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_RANGE_DAYS} days.")
        return data
