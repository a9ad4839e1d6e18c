"""``ups.status``: a space-separated list of flags, read tolerantly.

Real drivers report contradictory flags (``OL OB``), flags no document lists (``HE``, ``HB`` on some models),
stray text and nothing at all (shared/samples/nut/observed_ups_status_values_in_nut-ddl.txt, from the NUT
device-dump library). So nothing here raises: unknown flags are kept as they are for whoever knows them, and
an empty status is no flags. What to conclude from a contradiction is the bridge's decision, not the parser's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = ["STATUS_FLAGS", "describe_status", "parse_status"]

STATUS_FLAGS: Mapping[str, str] = MappingProxyType({
    # NUT developer guide (docs/new-drivers.txt, "Status data"); ALARM, TEST and WAIT come from newer drivers.
    "OL": "on line (mains power)",
    "OB": "on battery",
    "LB": "low battery",
    "HB": "high battery",
    "RB": "replace battery",
    "CHRG": "charging",
    "DISCHRG": "discharging",
    "BYPASS": "on bypass",
    "CAL": "calibrating",
    "OFF": "output off",
    "OVER": "overloaded",
    "TRIM": "trimming high input voltage",
    "BOOST": "boosting low input voltage",
    "FSD": "forced shutdown",
    "ALARM": "alarm raised (see ups.alarm)",
    "TEST": "battery test running",
    "WAIT": "driver starting, no data yet",  # set by the driver core before the first update
})  # fmt: skip
"""The flags NUT documents and what they mean. A flag not listed here is still reported, as it came."""


def parse_status(text: str | None) -> frozenset[str]:
    """The flags of one ``ups.status`` value: ``"OB DISCHRG LB"`` → ``{"OB", "DISCHRG", "LB"}``.

    Splits on any whitespace; keeps unknown flags unchanged; ``""`` and ``None`` give no flags. Never raises.
    """
    if not text:
        return frozenset()
    return frozenset(text.split())


def describe_status(flags: Iterable[str]) -> str:
    """Flags in words, known ones first in NUT's order: ``{"CHRG", "OL"}`` → ``on line (mains power), charging``."""
    flags = set(flags)
    known = [meaning for flag, meaning in STATUS_FLAGS.items() if flag in flags]
    unknown = [f"unknown flag {flag}" for flag in sorted(flags - STATUS_FLAGS.keys())]
    return ", ".join(known + unknown) or "no status"
