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


def decimals_for(error: float | None) -> int | None:
    """The decimals that show an error's first significant digit (two where it starts with 1:
    0.14, not 0.1), so a value is written to the precision it was measured to; None where the
    error is unknown or zero."""
    if error is None or not math.isfinite(error) or error <= 0:
        return None
    exponent = math.floor(math.log10(error))
    first = error / 10 ** exponent
    return max(0, -exponent + (1 if first < 2 else 0))


def to_precision(value: float, error: float | None, sign: bool = False) -> str:
    """The value rounded to its error's precision (13.03 +- 0.5 -> "13.0"); number()'s three
    digits where the error is unknown."""
    places = decimals_for(error)
    if places is None or not math.isfinite(value):
        return (f"{value:+.3g}" if sign and math.isfinite(value) else number(value))
    return f"{value:{'+' if sign else ''},.{places}f}"


def with_error(value: float, se: float | None) -> str:
    """ "13.0 ± 0.5": a measured value and its standard error, to the error's precision."""
    if se is None or not math.isfinite(se):
        return number(value)
    return f"{to_precision(value, se)} ± {to_precision(se, se)}"


def interval(value: float, low: float, high: float, sign: bool = False) -> str:
    """ "13.3 [11.8, 14.1]": an estimate and its interval, to the interval's precision (a
    quarter of its width stands for the error)."""
    error = (high - low) / 4 if math.isfinite(high - low) else None
    return (f"{to_precision(value, error, sign)} [{to_precision(low, error, sign)}, "
            f"{to_precision(high, error, sign)}]")
