"""ISO 4217 minor units: money is an integer count of minor units plus a currency code.

Only the exceptions to "two decimals" are listed; a code that is not three upper-case
letters is rejected by validation before it gets here.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"[A-Z]{3}")

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMALS = "CLF UYW"

_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_ZERO_DECIMALS.split(" "), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(" "), 3),
    **dict.fromkeys(_FOUR_DECIMALS.split(" "), 4),
}


def is_currency_code(code: str) -> bool:
    return _CODE.fullmatch(code) is not None


def minor_per_major(code: str) -> int:
    """How many minor units make one major unit (100 for EUR, 1 for JPY)."""
    if not is_currency_code(code):
        raise ValueError(f"currency {code!r} is not an ISO 4217 code (three upper-case letters)")
    exponent: int = _EXPONENTS.get(code, 2)
    return int(10**exponent)
