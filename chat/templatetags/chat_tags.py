from decimal import Decimal

from django import template
from django.utils.safestring import mark_safe

from billing import money
from chat.catalogue import lookup
from chat.gateway.search import configured_backend
from chat.markdown import cite_sources, render_markdown

register = template.Library()


@register.filter
def markdown(text):
    return mark_safe(render_markdown(text))  # sanitised by render_markdown


@register.filter
def cite(html, sources):
    """A reply's [1], [2]... as links to its web sources (html: the output of `markdown`)."""
    return mark_safe(cite_sources(html, sources)) if sources else html


@register.simple_tag
def web_search_available() -> bool:
    return configured_backend() is not None


@register.filter
def usd(amount):
    """A cost as billing.money shows money (one rounding rule for the whole app)."""
    return money.usd(amount)


@register.filter
def usd_per_m(amount):
    """A catalogue price per 1M tokens: at least cents ($0.60, $15.00), more digits only when they count."""
    amount = Decimal(amount or 0).normalize()
    if amount.as_tuple().exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return f"${amount:f}"


@register.filter
def provider_label(name):
    return lookup.provider_label(name)


@register.filter
def context_short(tokens):
    """A context length as model lists show it: 8192 -> '8K', 131072 -> '131K', 1048576 -> '1M'."""
    tokens = int(tokens or 0)
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.3g}M"
    if tokens >= 1000:
        return f"{tokens // 1000}K"
    return str(tokens)
