"""Registers ↔ point values, as the site model maps them (``ModbusPoint``: type, word order, byte order, scale,
offset). The adapter decodes with it and the simulator encodes with it, so both agree by construction.

On the wire a two-register value is split into a high and a low word. ``word_order: little`` sends the low word
first (the "mixed endian" float32 of many meters, e.g. shared/samples/modbus/volttron_battery_meter.csv);
``byte_order: little`` swaps the two bytes inside every register. ``int32-m10k``/``uint32-m10k`` hold
``high × 10000 + low`` (Schneider ION "modulo 10 000"); their words are signed for the signed type.

Engineering value = raw × ``scale`` + ``offset``. Integers stay integers when scale is 1 and offset 0; scaled
values are rounded to the decimals of scale and offset (raw 2301 × 0.1 is 230.1, not 230.10000000000002), and
float32 to the 7 significant digits it carries (230.1, not 230.10000610351562).

Every refusal raises :class:`CodecError` with a reason a person can act on.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from decimal import Decimal
from functools import cache

from hub.events import Value
from hub.site import ModbusPoint

__all__ = ["CodecError", "decode", "decode_bit", "encode", "encode_bit"]

_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_M10K_WORD = {"int32-m10k": (-32768, 32767), "uint32-m10k": (0, 65535)}
_TRUE = frozenset({"true", "on", "1", "yes"})
_FALSE = frozenset({"false", "off", "0", "no"})


class CodecError(ValueError):
    """Registers or a value this point cannot take; ``str()`` is the reason."""


@cache
def _decimals(x: float) -> int:
    """Decimal places of ``x`` as written (0.1 → 1, 0.001 → 3, 2.5 → 1, 10.0 → 0)."""
    exponent = Decimal(repr(x)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _float32(x: float) -> float:
    return float(f"{x:.7g}")


# ------------------------------------------------------------------------------------------------ wire order
def _to_logical(point: ModbusPoint, words: Sequence[int]) -> list[int]:
    """Registers as received → high word first, bytes big-endian."""
    if len(words) != point.width:
        raise CodecError(f"{point.type} takes {point.width} register(s), got {len(words)}")
    out = [int(w) & 0xFFFF for w in words]
    if point.byte_order == "little":
        out = [((w & 0xFF) << 8) | (w >> 8) for w in out]
    if point.word_order == "little":
        out.reverse()
    return out


def _to_wire(point: ModbusPoint, words: list[int]) -> list[int]:
    """High word first, bytes big-endian → registers as the device holds them."""
    if point.word_order == "little":
        words = words[::-1]
    if point.byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


# ------------------------------------------------------------------------------------------------ decode
def _raw(point: ModbusPoint, words: Sequence[int]) -> int | float:
    logical = _to_logical(point, words)
    if point.type in _M10K_WORD:
        high, low = logical
        if point.type == "int32-m10k":
            high, low = (w - 0x10000 if w & 0x8000 else w for w in (high, low))
        if abs(low) > 9999:
            raise CodecError(f"{point.type} low word must be within ±9999, got {low} (is the type right?)")
        return high * 10000 + low
    data = b"".join(w.to_bytes(2, "big") for w in logical)
    raw: int | float = struct.unpack(">" + _STRUCT[point.type], data)[0]
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise CodecError(f"float32 register(s) hold {raw}")
        return _float32(raw)
    return raw


def decode(point: ModbusPoint, words: Sequence[int]) -> int | float:
    """The engineering value of a register point from its ``point.width`` registers, as received."""
    if point.type == "bool":
        raise CodecError(f"point {point.id} is a bit ({point.table}), not a register")
    raw = _raw(point, words)
    if point.scale == 1 and point.offset == 0:
        return raw
    value = raw * point.scale + point.offset
    if isinstance(raw, float):
        return _float32(value)
    return round(value, max(_decimals(point.scale), _decimals(point.offset)))


def decode_bit(point: ModbusPoint, bit: bool | int) -> bool:
    """The value of a coil or discrete input."""
    if point.type != "bool":
        raise CodecError(f"point {point.id} is a register ({point.type}), not a bit")
    return bool(bit)


# ------------------------------------------------------------------------------------------------ encode
def _number(point: ModbusPoint, value: Value) -> float:
    if isinstance(value, bool) or value is None:
        raise CodecError(f"point {point.id} takes a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise CodecError(f"point {point.id} takes a number, got {value!r}") from None
    if not math.isfinite(value):
        raise CodecError(f"point {point.id} takes a finite number, got {value!r}")
    return value


def encode(point: ModbusPoint, value: Value) -> list[int]:
    """The registers, as the device holds them, that make a register point read ``value``."""
    if point.type == "bool":
        raise CodecError(f"point {point.id} is a bit ({point.table}), not a register")
    number = _number(point, value)
    raw = (number - point.offset) / point.scale
    if point.type == "float32":
        try:
            data = struct.pack(">f", raw)
        except OverflowError:
            raise CodecError(f"point {point.id}: {value!r} does not fit a float32") from None
        return _to_wire(point, [int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")])
    whole = round(raw)
    if point.type in _M10K_WORD:
        signed, top = _M10K_WORD[point.type][0] < 0, _M10K_WORD[point.type][1] * 10000 + 9999
        if not ((-top if signed else 0) <= whole <= top):
            raise CodecError(f"point {point.id}: {value!r} is outside the range of {point.type}")
        high, low = divmod(abs(whole), 10000)
        if whole < 0:
            high, low = -high, -low
        return _to_wire(point, [high & 0xFFFF, low & 0xFFFF])
    fmt = ">" + _STRUCT[point.type]
    try:
        data = struct.pack(fmt, whole)
    except struct.error:
        bits = 8 * struct.calcsize(fmt)
        lo_, hi_ = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if point.type.startswith("int") else (0, (1 << bits) - 1)
        shown = f"{value!r}" if raw == number else f"{value!r} (raw {whole})"
        raise CodecError(f"point {point.id}: {shown} is outside {point.type} ({lo_} to {hi_})") from None
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return _to_wire(point, words)


def encode_bit(point: ModbusPoint, value: Value) -> bool:
    """The bit that makes a coil read ``value`` (true/false, 1/0, on/off, yes/no)."""
    if point.type != "bool":
        raise CodecError(f"point {point.id} is a register ({point.type}), not a bit")
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise CodecError(f"point {point.id} takes true or false, got {value!r}")
