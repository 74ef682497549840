from decimal import Decimal

from django import template
from django.utils.safestring import mark_safe

from chat.markdown import render_markdown

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
    amount = Decimal(amount or 0)
    return f"${amount.quantize(Decimal('0.01')) if amount >= 1 else amount.normalize():f}"
