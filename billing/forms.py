from __future__ import annotations

from datetime import date, datetime, timedelta

from django import forms
from django.utils import timezone

from .models import EnterpriseInquiry, UsageRecord
from .reports import day_bounds
from .subscriptions import add_month

MAX_RANGE_DAYS = 366
DEFAULT_RANGE = "30d"
QUICK_RANGES = [
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("period", "This period"),
    ("last-period", "Last period"),
]
CUSTOM_RANGE = "custom"
APP_DATE_FORMAT = "%-d %b %Y"  # how pages show dates ("9 Nov 2026"; templates: "j M Y")
DATE_INPUTS = ["%Y-%m-%d", "%d %b %Y", "%d %B %Y"]
# Usage exists only between these: bounding the dates keeps every day computed from them a valid date.
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2999, 12, 31)


class EnterpriseInquiryForm(forms.ModelForm):
    class Meta:
        model = EnterpriseInquiry
        fields = ["company", "contact_email", "expected_monthly_tokens", "message"]
        widgets = {"message": forms.Textarea(attrs={"rows": 6})}
        labels = {"expected_monthly_tokens": "Expected tokens per month"}
        help_texts = {"expected_monthly_tokens": "A rough figure is fine; leave it empty if you do not know yet."}


def _date_field(label: str) -> forms.DateField:
    return forms.DateField(
        label=label,
        input_formats=DATE_INPUTS,
        widget=forms.DateInput(format=APP_DATE_FORMAT, attrs={"placeholder": "9 Nov 2026", "size": 11}),
    )


class DateRangeForm(forms.Form):
    """The range of the usage pages: a quick range (`range`: 7 or 30 days up to today, this or last
    billing period) or a custom one (`start`, `end`: UTC days, both included); the last 30 days by
    default. `bounds()` gives the days shown and the moments the usage rows are counted between."""

    start = _date_field("From")
    end = _date_field("To")

    def __init__(self, data, *, period_of=None):
        super().__init__(data)
        self.period_of = period_of  # () -> the current period's (start, end); asked only when needed
        self.range_key = data.get("range") or (CUSTOM_RANGE if data.get("start") or data.get("end") else DEFAULT_RANGE)
        self.moments: tuple[datetime, datetime] | None = None

    @classmethod
    def from_query(cls, query, *, period_of=None) -> DateRangeForm:
        """Bound to the query string, a quick range's dates filled in (so they show in the fields)."""
        data = query.copy()
        form = cls(data, period_of=period_of)
        quick = form._quick_range()
        if quick is not None:
            (data["start"], data["end"]), form.moments = [f"{d:{APP_DATE_FORMAT}}" for d in quick[:2]], quick[2]
        return form

    def _quick_range(self) -> tuple[date, date, tuple[datetime, datetime]] | None:
        today = timezone.now().date()
        if self.range_key in ("7d", "30d"):
            start = today - timedelta(days=int(self.range_key[:-1]) - 1)
            return start, today, day_bounds(start, today)
        if self.range_key in ("period", "last-period") and self.period_of is not None:
            since, until = self.period_of()
            if self.range_key == "last-period":
                since, until = add_month(since, -1), since
            return since.date(), (until - timedelta(microseconds=1)).date(), (since, until)
        return None

    def _bounded(self, name: str) -> date:
        day = self.cleaned_data[name]
        if not FIRST_DAY <= day <= LAST_DAY:
            raise forms.ValidationError(
                f"Choose a date from {FIRST_DAY:{APP_DATE_FORMAT}} to {LAST_DAY:{APP_DATE_FORMAT}}."
            )
        return day

    def clean_start(self):
        return self._bounded("start")

    def clean_end(self):
        return self._bounded("end")

    def clean(self):
        data = super().clean()
        if self.range_key not in dict(QUICK_RANGES) and self.range_key != CUSTOM_RANGE:
            raise forms.ValidationError("Choose one of the ranges offered.")
        if "start" not in data or "end" not in data:
            return data  # a field error already says what is wrong
        if data["start"] > data["end"]:
            raise forms.ValidationError("The start date must come before the end date.")
        if (data["end"] - data["start"]).days >= MAX_RANGE_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_RANGE_DAYS} days.")
        return data

    def bounds(self) -> tuple[date, date, datetime, datetime]:
        """(first day, last day, since, until) of a valid form."""
        start, end = self.cleaned_data["start"], self.cleaned_data["end"]
        since, until = self.moments or day_bounds(start, end)
        return start, end, since, until

    def query(self) -> dict[str, str]:
        """The query-string fields that choose this range again (links, hidden inputs)."""
        if self.range_key != CUSTOM_RANGE:
            return {"range": self.range_key}
        return {"start": self.cleaned_data["start"].isoformat(), "end": self.cleaned_data["end"].isoformat()}


class ActivityFilterForm(forms.Form):
    """Filters of the activity log: where requests came from, the model, the outcome."""

    source = forms.ChoiceField(label="From", required=False)
    model = forms.ChoiceField(label="Model", required=False)
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *UsageRecord.Status.choices]
    )

    def __init__(self, data, *, api_keys, models):
        super().__init__(data)
        self.fields["source"].choices = [
            ("", "Everywhere"),
            ("chat", "Chat page"),
            ("api", "API (any key)"),
            *((str(key.pk), f"API · {key.name}") for key in api_keys),
        ]
        self.fields["model"].choices = [("", "All models"), *((slug, slug) for slug in models)]

    def apply(self, records):
        source, model, status = (self.cleaned_data[name] for name in ("source", "model", "status"))
        if source == "chat":
            records = records.filter(api_key__isnull=True)
        elif source == "api":
            records = records.filter(api_key__isnull=False)
        elif source:
            records = records.filter(api_key_id=int(source))
        if model:
            records = records.filter(model_slug=model)
        if status:
            records = records.filter(status=status)
        return records

    @property
    def active(self) -> bool:
        return self.is_bound and any(self.data.get(name) for name in self.fields)
