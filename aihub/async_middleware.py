"""A base for our middleware: sync or async, whichever the chain around it is."""

from __future__ import annotations

import abc
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class SyncAndAsyncMiddleware(abc.ABC):
    """Async under ASGI: a sync-only middleware would run the rest of the chain, views included, in an
    async_to_sync bridge whose executor quits when the view returns, so the database calls of a
    response still streaming after that (a generation settling its usage) would fail. Django's
    MiddlewareMixin would hop to a thread for every request instead. Subclasses write `handle` (sync)
    and `ahandle` (async), each calling `self.get_response` for the rest of the chain."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if iscoroutinefunction(self):
            return self.ahandle(request)
        return self.handle(request)

    @abc.abstractmethod
    def handle(self, request: Any) -> Any: ...

    @abc.abstractmethod
    async def ahandle(self, request: Any) -> Any: ...
