"""Reading untrusted input at the edges (HTTP bodies and queries, socket frames, webhooks) and
writing user text into CSV files: one place for the traps every edge shares."""

from __future__ import annotations

import csv
import json
import re

# str.isdigit() is true for '²' and '١': int() then fails on the first and accepts the second.
_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")  # at most 18 digits: always a 64-bit integer
# A \uD800-\uDFFF escape: the only way a JSON text read from valid UTF-8 can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Spreadsheets run a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class BadJson(ValueError):
    """A JSON text we refuse; str() says why, for the person who sent it."""


def whole_number(raw: str | None) -> int | None:
    """The value of a string of ASCII digits (up to 18 of them), or None for anything else."""
    if raw is None or not _ASCII_DIGITS.fullmatch(raw):
        return None
    return int(raw)


def parse_json(raw: bytes | str):
    """The value of a JSON text in UTF-8. Raises BadJson for invalid UTF-8 or JSON, nesting too deep
    to read, and strings with an unpaired surrogate (no UTF-8 text, so no database or upstream takes it)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError:
        raise BadJson("The body is not valid UTF-8.") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise BadJson("The JSON is nested too deeply.") from None
    except ValueError:
        raise BadJson("The body is not valid JSON.") from None
    if _SURROGATE_ESCAPE.search(text) and not _is_utf8_text(data):
        raise BadJson("The JSON holds a string with an unpaired UTF-16 surrogate (\\ud800-\\udfff).")
    return data


def _is_utf8_text(data) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def spreadsheet_safe(value):
    """A CSV cell that a spreadsheet shows as text: a string starting like a formula gets a leading '."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class SafeCsvWriter:
    """csv.writer whose string cells are made spreadsheet_safe."""

    def __init__(self, file):
        self._writer = csv.writer(file)

    def writerow(self, row):
        return self._writer.writerow([spreadsheet_safe(cell) for cell in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)
