"""Upstream model providers behind one interface, and the router that chains them."""

from .base import Completion, Provider, ProviderError, StreamEnd, Usage

__all__ = ["Completion", "Provider", "ProviderError", "StreamEnd", "Usage"]
