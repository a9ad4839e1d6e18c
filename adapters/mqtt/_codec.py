"""MQTT payloads ↔ point values, as the site model maps them (docs/mqtt.md, "Device payloads").

Decoding, for a point with
- ``field``: the payload is a JSON object and the value is at that (dotted) field;
- no ``field``: the payload text itself (UTF-8, surrounding whitespace ignored) is the value.
Then ``values`` (payload text → value) maps it if given; else ``states`` restricts text to those states; else
the point kind decides (:func:`hub.site.value_type`): bool (true/false, on/off, 1/0, yes/no), number (JSON
number or numeric text, times ``scale``; NaN and infinity refused), or text.

Every refusal raises :class:`PayloadError` with a reason a person can act on; the adapter turns it into a
rate-limited log line, a counter, and quality ``bad`` for the point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from hub.events import Value
from hub.site import MqttPoint, value_type

__all__ = ["MissingField", "PayloadError", "decode", "encode_command", "encode_state", "parse_json"]

_TRUE = frozenset({"true", "on", "1", "yes"})
_FALSE = frozenset({"false", "off", "0", "no"})


class PayloadError(ValueError):
    """A payload this point cannot take; ``str()`` is the reason."""


class MissingField(PayloadError):
    """The JSON document does not carry this point's field (a partial update may leave fields out)."""


def parse_json(payload: bytes) -> Any:
    """The JSON document in ``payload``; one parse serves every point sharing a topic."""
    try:
        return json.loads(payload)
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc.msg} at character {exc.pos}") from None


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not UTF-8 text (byte {exc.start})") from None


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def decode(point: MqttPoint, payload: bytes, document: Any = None) -> Value:
    """The value of ``point`` in ``payload``. ``document`` is the payload already parsed as JSON, if it was."""
    if point.field is not None:
        doc = parse_json(payload) if document is None else document
        if not isinstance(doc, dict):
            raise PayloadError(f"expected a JSON object with field {point.field!r}, got {_shown(doc)}")
        raw: Any = doc
        for part in point.field.split("."):
            if not isinstance(raw, dict) or part not in raw:
                raise MissingField(f"field {point.field!r} missing")
            raw = raw[part]
    else:
        if not payload:
            raise PayloadError("empty payload")
        raw = _text(payload)
    return _convert(point, raw)


def _convert(point: MqttPoint, raw: Any) -> Value:
    if point.values is not None:
        key = json.dumps(raw) if isinstance(raw, bool) else str(raw)
        if key not in point.values:
            raise PayloadError(f"unexpected value {_shown(raw)} (expected one of {', '.join(point.values)})")
        return point.values[key]
    if point.states is not None:
        text = str(raw)
        if text not in point.states:
            raise PayloadError(f"unexpected state {_shown(raw)} (expected one of {', '.join(point.states)})")
        return text
    kind = value_type(point.kind)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise PayloadError(f"expected true or false, got {_shown(raw)}")
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise PayloadError(f"expected a number, got {_shown(raw)}")
        number: int | float
        try:
            number = raw if not isinstance(raw, str) else (int(raw) if raw.lstrip("+-").isdigit() else float(raw))
        except ValueError:
            raise PayloadError(f"expected a number, got {_shown(raw)}") from None
        if not math.isfinite(number):
            raise PayloadError(f"expected a finite number, got {_shown(raw)}")
        if point.scale != 1.0:
            number = number * point.scale
        if (point.min is not None and number < point.min) or (point.max is not None and number > point.max):
            raise PayloadError(f"{number:g} is outside {_bound(point.min)}..{_bound(point.max)}")
        return number
    if isinstance(raw, dict | list):
        raise PayloadError(f"expected text, got {_shown(raw)}")
    return raw if isinstance(raw, str) else json.dumps(raw)


def _bound(limit: float | None) -> str:
    return "" if limit is None else f"{limit:g}"


def _plain(point: MqttPoint, value: Value) -> str:
    if point.values is not None:
        for text, mapped in point.values.items():
            if mapped == value and type(mapped) is type(value):
                return text
        raise PayloadError(f"{value!r} is not one of {', '.join(map(repr, point.values.values()))}")
    if point.states is not None and value not in point.states:
        raise PayloadError(f"{value!r} is not one of {', '.join(point.states)}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        scaled = value / point.scale if point.scale != 1.0 else value
        return repr(int(scaled)) if float(scaled).is_integer() and isinstance(value, int) else repr(float(scaled))
    if value is None:
        raise PayloadError("no value to send")
    return str(value)


def encode_command(point: MqttPoint, value: Value) -> bytes:
    """The payload that commands ``point`` to ``value`` on its command topic (plain text, see docs/mqtt.md)."""
    return _plain(point, value).encode()


def encode_state(points: Sequence[tuple[MqttPoint, Value]], *, extra: dict[str, Any] | None = None) -> bytes:
    """A state payload as a device publishes it: a JSON object if the points have fields, else plain text.

    All ``points`` must share one topic. Used by the simulated building and in tests, so devices and the
    hub agree by construction.
    """
    if len(points) == 1 and points[0][0].field is None:
        return _plain(*points[0]).encode()
    doc: dict[str, Any] = dict(extra or {})
    for point, value in points:
        if point.field is None:
            raise PayloadError(f"point {point.id} shares a JSON topic but has no field")
        target = doc
        *parents, leaf = point.field.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        if point.values is not None:
            # JSON fields carry the payload text of a mapped value ("open"), as a device sends it.
            target[leaf] = _plain(point, value)
        elif isinstance(value, int | float) and not isinstance(value, bool) and point.scale != 1.0:
            target[leaf] = value / point.scale
        else:
            target[leaf] = value
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
