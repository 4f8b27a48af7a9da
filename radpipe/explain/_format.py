"""Numbers as people write them, shared by the pages and the LIME conditions."""

from __future__ import annotations

import numpy as np

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def plain_number(v, digits: int = 3, *, thousands: bool = True) -> str:
    """A measured value with ``digits`` significant digits, thousands separated, and no exponent unless the value
    is tiny (below 0.0001). Missing values read "missing", never "nan". ``thousands=False`` leaves out the
    separators (for text that lands in a CSV cell).

    >>> [plain_number(v) for v in (455612.3, 25.94, 0.01234, 0.0, 3.2e-7, float("nan"), None, 999.96)]
    ['456,000', '25.9', '0.0123', '0', '3.2 × 10⁻⁷', 'missing', 'missing', '1,000']
    """
    if v is None:
        return "missing"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not np.isfinite(x):
        return "missing" if np.isnan(x) else ("∞" if x > 0 else "−∞")
    if x == 0:
        return "0"
    magnitude = int(np.floor(np.log10(abs(x))))
    if magnitude < -4:
        mantissa, exponent = f"{x:.{digits - 2}e}".split("e")
        return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"
    sep = "," if thousands else ""
    if magnitude >= digits:  # round to significant digits, keep every integer digit
        return f"{round(x, digits - 1 - magnitude):{sep}.0f}"
    return f"{x:{sep}.{max(0, digits - 1 - magnitude)}f}"
