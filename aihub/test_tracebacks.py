"""Loaded by pytest (`-p aihub.test_tracebacks`): the app's log over the whole run must hold no unhandled
traceback. Every log record at ERROR or above that carries one (Django's "Internal Server Error", an
exception inside the ASGI application, an asyncio task whose exception nobody retrieved, a
logger.exception of the app) is kept; if there are any, they are printed at the end and the run fails,
even when every test passed. A test that provokes one on purpose says so with
@pytest.mark.logs_traceback."""

from __future__ import annotations

import logging

import pytest

_handler: _Tracebacks | None = None


class _Tracebacks(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.found: list[str] = []
        self.test = "(outside any test)"
        self.expected = False

    def emit(self, record: logging.LogRecord) -> None:
        # django.security.* records a refused request (a bad Host header, a suspicious operation)
        # answered with a 400: handled, though Django attaches the exception.
        if record.exc_info and not self.expected and not record.name.startswith("django.security."):
            self.found.append(f"{self.test}: {record.name}: {record.getMessage()}\n{self.format(record)}")


def pytest_configure(config):
    config.addinivalue_line("markers", "logs_traceback: the test makes the app log a traceback on purpose")


def pytest_sessionstart(session):
    global _handler
    _handler = _Tracebacks()
    _handler.setFormatter(logging.Formatter())
    logging.getLogger().addHandler(_handler)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _handler is not None:
        root = logging.getLogger()
        if _handler not in root.handlers:  # a test that reconfigured logging (dictConfig) dropped it
            root.addHandler(_handler)
        _handler.test, _handler.expected = item.nodeid, item.get_closest_marker("logs_traceback") is not None
    try:
        return (yield)
    finally:
        if _handler is not None:
            _handler.test, _handler.expected = "(between tests)", False


def pytest_sessionfinish(session, exitstatus):
    if _handler is None:
        return
    logging.getLogger().removeHandler(_handler)
    if _handler.found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _handler is not None and _handler.found:
        terminalreporter.section("unhandled tracebacks in the app's log", red=True)
        for entry in _handler.found:
            terminalreporter.write_line(entry)
        terminalreporter.write_line(f"{len(_handler.found)} unhandled traceback(s) logged: the run fails")
