"""Numbers as a researcher reads them: token counts as 655k or 1M, values to a few digits."""

from __future__ import annotations

import math


def number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits}g}"
    return f"{value:,.{max(0, digits - 1 - int(math.floor(math.log10(abs(value) or 1))))}f}"


def tokens(value: float | None) -> str:
    """1,000,000 -> '1M', 640,000 -> '640k'."""
    if value is None or not math.isfinite(value):
        return "-"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"
