"""Money, one rounding rule for all of it.

Amounts are Decimal US dollars. A request's cost is stored to 8 decimal places (a millionth of a
cent: one token of a cheap model costs less than a cent); plan prices and invoices to the cent.
Sums are taken over the stored amounts and rounded once, where they are shown, half up:

- on pages and in admin (`usd`): from one cent up to 4 decimal places, below a cent to all 8
  places, trailing zeros dropped ($1.75, $0.0123, $0.000387, $0.00000012); zero is $0;
- in CSV files (`plain`): every stored place, as a plain decimal (0.00000000, never 0E-8).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

STORED_PLACES = 8
CENT = Decimal("0.01")


def _rounded(amount, places: int) -> Decimal:
    return Decimal(amount or 0).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def plain(amount, places: int = STORED_PLACES) -> str:
    """For files: a fixed number of places, no exponent."""
    return f"{_rounded(amount, places):f}"


def usd(amount) -> str:
    """For people: enough places that a fraction of a cent never shows as zero."""
    amount = Decimal(amount or 0)
    if amount == 0:
        return "$0"
    shown = _rounded(amount, 4 if abs(amount) >= CENT else STORED_PLACES).normalize()
    return f"${shown:f}"
