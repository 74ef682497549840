from decimal import Decimal

from django import template
from django.utils.safestring import mark_safe

from chat.markdown import render_markdown
from chat.catalogue.models import Provider

register = template.Library()


@register.filter
def markdown(text):
    return mark_safe(render_markdown(text))  # sanitised by render_markdown


@register.filter
def usd(amount):
    """A request's cost: exact to the millionth of a dollar; small figures kept readable."""
    amount = Decimal(amount or 0)
    if amount == 0:
        return "$0"
    if amount < Decimal("0.01"):
        return f"${amount.quantize(Decimal('0.000001')).normalize():f}"
    return f"${amount.quantize(Decimal('0.0001')).normalize():f}"


@register.filter
def usd_per_m(amount):
    """A catalogue price per 1M tokens: at least cents ($0.60, $15.00), more digits only when they count."""
    amount = Decimal(amount or 0).normalize()
    if amount.as_tuple().exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return f"${amount:f}"


@register.filter
def provider_label(name):
    """'openai_compat' -> 'OpenAI-compatible'; a provider no longer known is shown as stored."""
    return Provider(name).label if name in Provider.values else name
