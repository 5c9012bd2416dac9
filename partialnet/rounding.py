"""Numbers printed beside a gate, rounded so the printed figures tell the verdict the real ones do.

Rounding to nearest can carry a value across its threshold: a cosine of 0.9999999999995 printed as
1.00000000 beside "FAIL (cosine)", a max |Δ| of 1.4715e-07 printed as 1.47e-07 as the tightest tolerance
that would pass, which then fails when passed back as --atol.
"""

from __future__ import annotations


def at_least(value: float, digits: int = 3) -> str:
    """`value` in `digits` significant digits, rounded up: a bound that `value` is within (a max |Δ| tolerance)."""
    text = f"{value:.{digits - 1}e}"
    while float(text) < value:  # never for 0, NaN or Inf: they print as they are
        mantissa, exponent = text.split("e")
        text = f"{(float(mantissa) + 10.0 ** (1 - digits)) * 10.0 ** int(exponent):.{digits - 1}e}"
    return text


def at_most(value: float, decimals: int = 8) -> str:
    """`value` in `decimals` decimals, rounded down: a bound that `value` reaches (a minimum cosine)."""
    text = f"{value:.{decimals}f}"
    while float(text) > value:  # never for NaN or Inf
        text = f"{float(text) - 10.0 ** -decimals:.{decimals}f}"
    return text


def apart(value: float, bound: float, spec: str = "g") -> tuple[str, str]:
    """`value` with as many significant digits (3 at least; `spec` "%": decimals of a percentage, 1 at least) as it
    takes to read as another number than `bound`, and `bound` as given: a failure line must not read
    "1.47e-07 > 1.47e-07" or "cosine 1.000000 < 1"."""
    if spec == "%":
        given = repr(round(bound * 100, 10)).removesuffix(".0") + "%"
        digits = next((d for d in range(1, 16) if round(value * 100, d) != round(bound * 100, 10)), 15)
        return f"{value * 100:.{digits}f}%", given
    digits = next((d for d in range(3, 18) if float(f"{value:.{d}g}") != bound), 17)
    return f"{value:.{digits}g}", repr(float(bound))
