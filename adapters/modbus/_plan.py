"""Which requests read a device's points: the fewest reads per table, within what one Modbus request may carry.

Points of one table of one unit are sorted by address and packed greedily: a point joins the current read when
the unused registers between them are at most ``max_gap`` (``max_bit_gap`` for coils and discrete inputs) and
the read stays within 125 registers or 2000 bits (Modbus application protocol v1.1b3, 6.1-6.4). Reading a few
unused registers costs bytes; another request costs a round trip through the gateway.

Some devices refuse a read that touches an unmapped register (exception 2, illegal data address). For those
:func:`split` gives the same points as gap-free reads, then one read per point; the adapter keeps the split.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from hub.site import ModbusPoint

__all__ = ["MAX_BITS", "MAX_REGISTERS", "Read", "Slot", "Table", "plan", "split"]

Table = Literal["holding", "input", "coil", "discrete"]
MAX_REGISTERS = 125  # read holding/input registers: 1-125 registers
MAX_BITS = 2000  # read coils/discrete inputs: 1-2000 bits
_TABLE_ORDER: tuple[Table, ...] = ("holding", "input", "coil", "discrete")


@dataclass(frozen=True, slots=True)
class Slot:
    """One point and where it sits."""

    point: str  # site-wide id, "<device>.<point>"
    spec: ModbusPoint

    @property
    def start(self) -> int:
        return self.spec.address

    @property
    def end(self) -> int:
        """One past its last register (or bit)."""
        return self.spec.address + self.spec.width


@dataclass(frozen=True, slots=True)
class Read:
    """One read request: ``count`` registers (or bits) of ``table`` from ``start``, carrying ``slots``."""

    table: Table
    start: int
    count: int
    slots: tuple[Slot, ...]

    @property
    def bits(self) -> bool:
        return self.table in ("coil", "discrete")

    def __str__(self) -> str:
        last = self.start + self.count - 1
        span = f"{self.start}" if last == self.start else f"{self.start}-{last}"
        return f"{self.table} {span}"


def plan(slots: Iterable[Slot], *, max_gap: int = 8, max_bit_gap: int = 64) -> list[Read]:
    """The fewest reads covering ``slots`` (one unit): per table in address order, gaps up to the limits."""
    by_table: dict[Table, list[Slot]] = {}
    for slot in slots:
        by_table.setdefault(slot.spec.table, []).append(slot)
    reads: list[Read] = []
    for table in _TABLE_ORDER:
        members = sorted(by_table.get(table, ()), key=lambda s: (s.start, s.end))
        bits = table in ("coil", "discrete")
        gap, limit = (max_bit_gap, MAX_BITS) if bits else (max_gap, MAX_REGISTERS)
        current: list[Slot] = []
        start = end = 0
        for slot in members:
            if current and slot.start - end <= gap and max(end, slot.end) - start <= limit:
                current.append(slot)
                end = max(end, slot.end)
                continue
            if current:
                reads.append(Read(table, start, end - start, tuple(current)))
            current, start, end = [slot], slot.start, slot.end
        if current:
            reads.append(Read(table, start, end - start, tuple(current)))
    return reads


def split(read: Read) -> list[Read]:
    """``read`` as smaller reads: gap-free runs if it spans unused registers, else one read per point.

    Returns ``[read]`` when it cannot be split (one point, or points sharing registers).
    """
    runs = plan(read.slots, max_gap=0, max_bit_gap=0)
    if len(runs) > 1:
        return runs
    singles = [Read(read.table, s.start, s.spec.width, (s,)) for s in read.slots]
    if len(singles) > 1 and all(a.start + a.count <= b.start for a, b in pairwise(singles)):
        return singles
    return [read]
