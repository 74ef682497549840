"""Structured logs: one JSON object a line in production (LOG_FORMAT=json), with the id of the model
request being served (the usage row's request_id, also sent upstream as X-Request-ID).

Nothing secret by default: no prompt or reply text is logged anywhere, and a filter masks what looks
like a key, a bearer token or a password in any message before it is written."""

from __future__ import annotations

import datetime
import json
import logging
import re
from contextvars import ContextVar

# Set by Generation for the request it runs (per asyncio task / thread context).
request_id: ContextVar[str | None] = ContextVar("aihub_request_id", default=None)

SECRETS = re.compile(
    r"(?P<keep>(?:authorization|bearer|api[_-]?key|x-goog-api-key|password|passwd|secret|token)"
    r"[\"']?\s*[:=]?\s*[\"']?(?:bearer\s+)?)(?P<secret>[^\s\"',;&]{6,})"
    r"|(?P<token>\b(?:ahk_|sk-|sk_live_|sk_test_|whsec_|AIza)[A-Za-z0-9_\-]{8,})",
    re.IGNORECASE,
)
# LogRecord's own attributes: anything else on a record came from `extra=` and is logged as a field.
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}


def redact(text: str) -> str:
    return SECRETS.sub(lambda m: f"{m.group('keep')}[redacted]" if m.group("secret") else "[redacted]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


class RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def logging_config(fmt: str, level: str) -> dict:
    """settings.LOGGING: `json` (production) or `text` lines, secrets masked either way."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}, "request_id": {"()": RequestId}},
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if fmt == "json" else "text",
                "filters": ["request_id", "redact"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
    }
