"""Register codec and read planner of the Modbus adapter, checked against pymodbus's own conversions and the
real register maps in shared/samples/modbus."""

from __future__ import annotations

import csv
import math
import struct
from typing import Any, Literal

import pytest
from pymodbus.client import AsyncModbusTcpClient

from adapters.modbus._codec import CodecError, decode, decode_bit, encode, encode_bit
from adapters.modbus._plan import MAX_BITS, MAX_REGISTERS, Read, Slot, plan, split
from hub.site import ModbusDeviceType, ModbusPoint, load_site
from tests.conftest import SHARED, SITE_MODEL

DT = AsyncModbusTcpClient.DATATYPE


def point(type_: str = "uint16", table: str = "holding", address: int = 0, **kw: Any) -> ModbusPoint:
    return ModbusPoint.model_validate({"id": f"p{address}", "kind": "power", "table": table, "address": address,
                                       "type": type_, **kw})  # fmt: skip


def reference(value: float, data_type: Any, word_order: Literal["big", "little"] = "big") -> list[int]:
    """Registers as pymodbus itself encodes them: an encoder independent of ours."""
    return AsyncModbusTcpClient.convert_to_registers(value, data_type, word_order=word_order)


# ------------------------------------------------------------------------------------------------ decode
@pytest.mark.parametrize("order", ["big", "little"])
def test_float32_in_both_word_orders_matches_pymodbus(order: Literal["big", "little"]) -> None:
    p = point("float32", word_order=order)
    for value in (230.1, -12.25, 0.0, 1.5e6, 415.7):
        regs = reference(value, DT.FLOAT32, order)
        assert decode(p, regs) == pytest.approx(value, rel=1e-7)
        assert encode(p, value) == regs
    # 230.1 is not exact in float32; the codec gives back what the meter meant, not 230.10000610351562
    assert decode(p, reference(230.1, DT.FLOAT32, order)) == 230.1


def test_mixed_endian_float_of_the_battery_meter_sample() -> None:
    """volttron_battery_meter.csv marks its floats "Mixed Endian": low word first (word_order little)."""
    with (SHARED / "samples" / "modbus" / "volttron_battery_meter.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert all(r["Mixed Endian"] == "TRUE" and r["Type"] == "float" for r in rows)
    p = point("float32", word_order="little")
    high, low = struct.unpack(">HH", struct.pack(">f", 50.02))
    assert decode(p, [low, high]) == 50.02
    assert decode(point("float32"), [low, high]) != 50.02  # read big-endian it is garbage


def test_byte_order_swaps_bytes_within_each_register() -> None:
    p = point("uint32", byte_order="little")
    assert decode(p, [0x3412, 0x7856]) == 0x12345678
    assert encode(p, 0x12345678) == [0x3412, 0x7856]
    both = point("uint32", byte_order="little", word_order="little")
    assert decode(both, [0x7856, 0x3412]) == 0x12345678


def test_m10k_is_high_times_ten_thousand_plus_low() -> None:
    """ION6200 energy registers (INT32-M10K): kwh_del 123 456 789 is high 12345, low 6789."""
    signed, unsigned = point("int32-m10k"), point("uint32-m10k")
    assert decode(signed, [12345, 6789]) == 123456789
    assert decode(unsigned, [60000, 9999]) == 600009999
    assert decode(signed, [0xFFFF, 0x10000 - 2345]) == -12345  # high -1, low -2345
    assert encode(signed, -12345) == [0xFFFF, 0x10000 - 2345]
    assert encode(unsigned, 123456789) == [12345, 6789]
    assert decode(point("uint32-m10k", word_order="little"), [6789, 12345]) == 123456789
    with pytest.raises(CodecError, match="low word"):
        decode(unsigned, [1, 10000])  # not m10k at all: the type in the site model is wrong
    with pytest.raises(CodecError, match="outside the range"):
        encode(unsigned, -1)


def test_scale_and_offset_round_to_their_decimals_and_ints_stay_ints() -> None:
    assert decode(point("uint16"), [2301]) == 2301
    assert isinstance(decode(point("uint16"), [2301]), int)
    assert decode(point("uint16", scale=0.1), [2301]) == 230.1
    assert decode(point("int16", scale=0.01), [0x10000 - 5]) == -0.05
    assert decode(point("uint32", scale=0.001), reference(3_456_789, DT.UINT32)) == 3456.789
    assert decode(point("int16", scale=0.5, offset=-40), [100]) == 10.0
    assert encode(point("int16", scale=0.1), 21.5) == [215]
    assert encode(point("int16", scale=0.5, offset=-40), 10) == [100]


@pytest.mark.parametrize(
    ("type_", "value"),
    [("int16", -32768), ("uint16", 65535), ("int32", -2_000_000_000), ("uint32", 4_000_000_000),
     ("float32", 3.25), ("int32-m10k", -327_679_999), ("uint32-m10k", 655_359_999)],
)  # fmt: skip
def test_every_type_round_trips(type_: str, value: float) -> None:
    for word_order in ("big", "little"):
        for byte_order in ("big", "little"):
            p = point(type_, word_order=word_order, byte_order=byte_order)
            assert decode(p, encode(p, value)) == value


def test_refusals_name_the_problem() -> None:
    with pytest.raises(CodecError, match=r"outside uint16 \(0 to 65535\)"):
        encode(point("uint16"), 70000)
    with pytest.raises(CodecError, match=r"raw -700"):
        encode(point("uint16", scale=0.1), -70.0)
    with pytest.raises(CodecError, match="takes a number"):
        encode(point("uint16"), True)
    with pytest.raises(CodecError, match="finite"):
        encode(point("float32"), math.nan)
    with pytest.raises(CodecError, match="hold nan"):
        decode(point("float32"), [0x7FC0, 0])
    with pytest.raises(CodecError, match="takes 2 register"):
        decode(point("float32"), [1])
    assert encode(point("uint16"), " 42 ") == [42]  # numeric text, as an API may send it


def test_bits() -> None:
    coil = point("bool", table="coil")
    assert decode_bit(coil, 1) is True
    assert encode_bit(coil, "on") is True
    assert encode_bit(coil, 0) is False
    with pytest.raises(CodecError, match="true or false"):
        encode_bit(coil, 2)
    with pytest.raises(CodecError, match="not a register"):
        encode(coil, True)


# ------------------------------------------------------------------------------------------------ planning
def slots(*points: ModbusPoint) -> list[Slot]:
    return [Slot(f"dev.{p.id}", p) for p in points]


def test_twenty_contiguous_registers_and_three_coils_are_two_reads() -> None:
    reads = plan(slots(*(point(address=a) for a in range(20)), *(point("bool", "coil", a) for a in range(3))))
    assert [(r.table, r.start, r.count, len(r.slots)) for r in reads] == [("holding", 0, 20, 20), ("coil", 0, 3, 3)]


def test_small_gaps_merge_and_a_gap_of_200_splits() -> None:
    assert [(r.start, r.count) for r in plan(slots(point(address=0), point(address=9)))] == [(0, 10)]  # 8 unused
    assert len(plan(slots(point(address=0), point(address=10)))) == 2  # 9 unused
    far = plan(slots(point(address=0), point("float32", address=201)))
    assert [(r.start, r.count) for r in far] == [(0, 1), (201, 2)]


def test_reads_respect_the_protocol_limits() -> None:
    regs = plan(slots(*(point(address=a) for a in range(300))))
    assert [r.count for r in regs] == [MAX_REGISTERS, MAX_REGISTERS, 50]
    bits = plan(slots(*(point("bool", "discrete", a) for a in range(0, 4500, 10))), max_bit_gap=64)
    assert all(r.count <= MAX_BITS for r in bits)
    assert len(bits) == 3
    # a two-register value never straddles two reads
    edge = plan(slots(*(point(address=a) for a in range(124)), point("float32", address=124)))
    assert [(r.start, r.count) for r in edge] == [(0, 124), (124, 2)]


def test_split_gives_gap_free_runs_then_single_points() -> None:
    [merged] = plan(slots(point(address=0), point(address=1), point(address=5)))
    runs = split(merged)
    assert [(r.start, r.count) for r in runs] == [(0, 2), (5, 1)]
    assert [(r.start, r.count) for r in split(runs[0])] == [(0, 1), (1, 1)]
    single = Read("holding", 5, 1, runs[1].slots)
    assert split(single) == [single]


def test_the_site_models_register_maps_need_few_reads() -> None:
    """Reads per poll of every Modbus device type of the real site model (ION6200: 2, WattsOn: 2, CRAH: 4)."""
    model = load_site(SITE_MODEL)
    reads = {
        name: len(plan(Slot(p.id, p) for p in t.points))
        for name, t in model.device_types.items()
        if isinstance(t, ModbusDeviceType)
    }
    assert reads == {"power-meter": 2, "power-meter-wattson": 2, "generator": 2, "pdu": 2, "crah": 4,
                     "rack-env-sensor": 1, "dali-lighting": 3}  # fmt: skip
