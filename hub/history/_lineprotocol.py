"""InfluxDB line protocol: one point per line, escaped so every server reads back exactly what was meant.

    <measurement>[,<tag key>=<tag value>...] <field key>=<field value>[,...] <timestamp ns>

Escaping, as InfluxDB 1.x/2.x parse it (``models/points.go``; checked against a real influxd 1.6.7 in
``tests/history/test_lineprotocol.py``):

=====================  ==========================================  ===========================================
element                escaped                                     cannot carry (:class:`Unencodable`)
=====================  ==========================================  ===========================================
measurement            ``,`` and space with ``\\``                 newline, CR; ``\\`` before ``,``/space/end
tag key, tag value,    ``,``, ``=`` and space with ``\\``          the same, and ``\\`` before ``=``
field key
string field value     ``"`` and ``\\`` with ``\\``; newlines      nothing: any text round-trips
                       stay raw inside the quotes
=====================  ==========================================  ===========================================

A backslash in a name or tag is literal (``a\\b`` is stored as ``a\\b``), which is why one right before a
character that needs escaping, or at the very end, has no spelling: the server would read it as an escape.
Empty tag values are left out (InfluxDB refuses them; a missing tag reads as ``''`` in queries).

Field types: ``bool`` → ``true``/``false``; ``int`` → ``123i`` (int64; outside that range, a float); ``float``
→ its shortest exact repr (``21.5``, ``1e+16``); ``str`` → quoted. NaN and ±infinity have no spelling: such a
field is left out and counted by the caller (:func:`encode_fields` returns how many), never failing a line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

__all__ = [
    "FieldValue",
    "Unencodable",
    "encode_fields",
    "encode_line",
    "escape_measurement",
    "escape_tag",
    "quote_string",
    "series_key",
    "split_points",
    "time_ns",
]

FieldValue = bool | int | float | str

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Unencodable(ValueError):
    """A name or tag value line protocol has no spelling for (see the module's table)."""


def _check(text: str, what: str, special: str) -> None:
    if "\n" in text or "\r" in text:
        raise Unencodable(f"{what} {text!r}: line protocol cannot carry a newline or carriage return there")
    if "\\" in text:
        if text.endswith("\\"):
            raise Unencodable(f"{what} {text!r}: line protocol cannot carry a trailing backslash there")
        if any(f"\\{c}" in text for c in special):
            raise Unencodable(f"{what} {text!r}: line protocol cannot carry a backslash before {special!r} there")


def escape_measurement(name: str) -> str:
    if not name:
        raise Unencodable("measurement name is empty")
    if name.startswith("#"):
        raise Unencodable(f"measurement {name!r}: a line starting with '#' is a comment")
    _check(name, "measurement", ", ")
    return name.translate(_MEASUREMENT)


def escape_tag(text: str, what: str = "tag") -> str:
    """A tag key, tag value or field key, escaped. Raises :class:`Unencodable` for what has no spelling."""
    _check(text, what, ",= ")
    return text.translate(_TAG)


def quote_string(text: str) -> str:
    """A string field value, quoted and escaped."""
    return '"' + text.translate(_STRING) + '"'


def series_key(measurement: str, tags: Mapping[str, str | None] | Iterable[tuple[str, str | None]]) -> str:
    """``measurement,k=v,...`` with tags sorted by key (as InfluxDB stores them) and empty values left out.

    This is the series' identity; a point is the series plus its timestamp, so writing the same point twice
    stores it once (the later fields win)."""
    items = tags.items() if isinstance(tags, Mapping) else tags
    parts = [escape_measurement(measurement)]
    for key, value in sorted((k, v) for k, v in items if v):
        if not key:
            raise Unencodable(f"measurement {measurement!r}: empty tag key")
        parts.append(f"{escape_tag(key, 'tag key')}={escape_tag(value, f'tag {key}')}")
    return ",".join(parts)


def _field_value(value: FieldValue) -> str | None:
    """The spelling of one field value; None for NaN/±infinity (and ints too large even for a float)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return f"{value}i"
        try:
            value = float(value)
        except OverflowError:
            return None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return quote_string(value)
    raise TypeError(f"field value of type {type(value).__name__} is not a line-protocol type: {value!r}")


def encode_fields(fields: Mapping[str, FieldValue | None]) -> tuple[str, int]:
    """``k=v,...`` for the fields that have a value (None means no field), and how many non-finite were left out.

    The field set may come out empty (every value was NaN): the caller decides what to do with such a point.
    """
    parts: list[str] = []
    dropped = 0
    for key, value in fields.items():
        if value is None:
            continue
        spelled = _field_value(value)
        if spelled is None:
            dropped += 1
            continue
        parts.append(f"{escape_tag(key, 'field key')}={spelled}")
    return ",".join(parts), dropped


def encode_line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    ns: int,
) -> tuple[str | None, int]:
    """One point as a line (no trailing newline), or None if no field is left; and the non-finite count."""
    field_set, dropped = encode_fields(fields)
    if not field_set:
        return None, dropped
    return f"{series_key(measurement, tags)} {field_set} {ns}", dropped


def time_ns(when: datetime) -> int:
    """Nanoseconds since the Unix epoch, exact to the microsecond (a naive time is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MICROSECOND * 1000


def split_points(body: bytes) -> list[bytes]:
    """The points of a line-protocol body, each with its newline. A newline inside a quoted string field value
    belongs to that value, so a plain split on newlines would cut such a point in two."""
    points: list[bytes] = []
    start = i = 0
    n = len(body)
    fields = quoted = False
    while i < n:
        c = body[i]
        if c == 0x5C:  # backslash: the next byte is escaped
            i += 2
            continue
        if c == 0x20 and not quoted:  # space: past the series key, into the fields (then the timestamp)
            fields = True
        elif c == 0x22 and fields:  # a double quote in the field set opens or closes a string
            quoted = not quoted
        elif c == 0x0A and not quoted:
            points.append(body[start : i + 1])
            start = i + 1
            fields = False
        i += 1
    if start < n:
        points.append(body[start:] + b"\n")
    return points
