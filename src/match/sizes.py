"""Sizes for people: ``human_size(27262976)`` is "26 MiB", in every message that names a limit."""

from __future__ import annotations

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def human_size(size: float) -> str:
    """Binary units, at most one decimal, none when whole: 512 bytes, 8 KiB, 25 MiB, 1.5 GiB."""
    value, unit = float(size), 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    if unit == 0:
        return f"{int(value)} byte" + ("" if int(value) == 1 else "s")
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {_UNITS[unit]}"
