"""The on-disk spool: batches of line protocol the database has not taken yet, oldest first.

One file per batch, ``<seq>-<points>-<first ns>-<last ns>.lp`` in the spool directory, written whole (temp
file, fsync, rename, fsync of the directory: :func:`hub.fileio.write_atomic`), so a crash leaves a batch
either complete or absent, never half. The name carries what the spool needs to know without reading the
file: the order, the number of points, the time span (for the ``history_gap`` of a batch dropped unsent).

The directory may use ``budget`` bytes. A batch that does not fit makes room by dropping the oldest batches
(not the one being replayed right now); a batch larger than the whole budget is itself dropped. Either way
:meth:`Spool.add` returns what was dropped, so the writer can count it and raise an alarm.

What was dropped is also kept, outside the budget, as the *open gap* (``gap.json``: points, first and last
timestamp): drops always take the oldest data, so successive drops of one outage extend one gap. It is written
to the database as one ``history_gap`` point once the spool has drained (its timestamp is the gap's start, so
writing a grown gap again overwrites the earlier version), and only then forgotten. Being outside the budget,
the record of a loss is never itself lost to the budget.

Methods do blocking file I/O: the writer calls them in a thread (``asyncio.to_thread``); a lock keeps the
index consistent between the writer's thread calls and the replay's.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from hub.fileio import write_atomic

__all__ = ["GAP_FILE", "Dropped", "Gap", "Spool", "SpoolEntry"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d+)-(\d+)-(-?\d+)-(-?\d+)\.lp$")
GAP_FILE = "gap.json"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    seq: int
    points: int
    first_ns: int
    last_ns: int
    size: int
    path: Path


@dataclass(frozen=True, slots=True)
class Dropped:
    """Batches dropped unsent to stay within the budget: how many points, from when to when."""

    batches: int
    points: int
    bytes: int
    first_ns: int
    last_ns: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Data lost for good, not yet recorded in the database."""

    points: int
    first_ns: int
    last_ns: int


class Spool:
    def __init__(self, directory: Path, budget: int) -> None:
        self.directory = directory
        self.budget = budget
        self._lock = threading.Lock()
        self._entries: deque[SpoolEntry] = deque()
        self._busy: set[int] = set()  # seqs being replayed: never dropped under the replay's feet
        self.bytes = 0
        self.points = 0
        self.gap: Gap | None = None
        found: list[SpoolEntry] = []
        # Created on the first batch spooled (write_atomic makes it): a hub that never spools leaves no trace.
        for path in directory.iterdir() if directory.is_dir() else ():
            m = _NAME.match(path.name)
            if m is None:
                if path.name == GAP_FILE:
                    self.gap = self._read_gap(path)
                elif path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a batch whose write a crash interrupted: never renamed in
                else:
                    log.warning("history spool %s: ignoring %s (not a spool file)", directory, path.name)
                continue
            seq, points, first, last = (int(g) for g in m.groups())
            found.append(SpoolEntry(seq, points, first, last, path.stat().st_size, path))
        for entry in sorted(found, key=lambda e: e.seq):
            self._entries.append(entry)
            self.bytes += entry.size
            self.points += entry.points
        self._next = max((e.seq for e in found), default=0) + 1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def batches(self) -> int:
        return len(self._entries)

    def add(self, body: bytes, points: int, first_ns: int, last_ns: int) -> Dropped | None:
        """Spool one batch (``body``: lines ending in newlines); returns what had to be dropped to fit, if any."""
        size = len(body)
        with self._lock:
            seq = self._next
            self._next += 1
            if size > self.budget:
                log.error("history spool %s: a batch of %d bytes exceeds the whole budget of %d bytes",
                          self.directory, size, self.budget)  # fmt: skip
                whole = Dropped(1, points, size, first_ns, last_ns)
                self._widen_gap(whole)
                return whole
            dropped = self._make_room(size)
            if dropped is not None:
                self._widen_gap(dropped)
        path = self.directory / f"{seq:012d}-{points}-{first_ns}-{last_ns}.lp"
        write_atomic(path, body, mode=0o600)
        with self._lock:
            entry = SpoolEntry(seq, points, first_ns, last_ns, size, path)
            # Appends happen in seq order only if adds do not overlap; keep the deque sorted regardless.
            if self._entries and self._entries[-1].seq > seq:
                items = sorted([*self._entries, entry], key=lambda e: e.seq)
                self._entries = deque(items)
            else:
                self._entries.append(entry)
            self.bytes += size
            self.points += points
        return dropped

    def _make_room(self, size: int) -> Dropped | None:
        batches = points = nbytes = 0
        first = last = 0
        for entry in list(self._entries):
            if self.bytes + size <= self.budget:
                break
            if entry.seq in self._busy:
                continue
            self._entries.remove(entry)
            self.bytes -= entry.size
            self.points -= entry.points
            entry.path.unlink(missing_ok=True)
            first = entry.first_ns if batches == 0 else min(first, entry.first_ns)
            last = max(last, entry.last_ns)
            batches += 1
            points += entry.points
            nbytes += entry.size
        return Dropped(batches, points, nbytes, first, last) if batches else None

    def _widen_gap(self, dropped: Dropped) -> None:
        old = self.gap
        if old is None:
            gap = Gap(dropped.points, dropped.first_ns, dropped.last_ns)
        else:
            gap = Gap(old.points + dropped.points, min(old.first_ns, dropped.first_ns),
                      max(old.last_ns, dropped.last_ns))  # fmt: skip
        write_atomic(self.directory / GAP_FILE, json.dumps(asdict(gap)).encode(), mode=0o600)
        self.gap = gap

    @staticmethod
    def _read_gap(path: Path) -> Gap | None:
        try:
            doc = json.loads(path.read_text())
            return Gap(int(doc["points"]), int(doc["first_ns"]), int(doc["last_ns"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("history spool: unreadable %s (%s); the gap it recorded is forgotten", path, exc)
            return None

    def close_gap(self, gap: Gap) -> None:
        """``gap`` is in the database: forget it (unless more was dropped meanwhile: then keep the rest open)."""
        with self._lock:
            if self.gap == gap:
                self.gap = None
                (self.directory / GAP_FILE).unlink(missing_ok=True)

    def oldest(self) -> SpoolEntry | None:
        """The oldest batch, marked busy (not droppable) until :meth:`release` or :meth:`remove`."""
        with self._lock:
            for entry in self._entries:
                self._busy.add(entry.seq)
                return entry
            return None

    def read(self, entry: SpoolEntry) -> bytes:
        return entry.path.read_bytes()

    def release(self, entry: SpoolEntry) -> None:
        with self._lock:
            self._busy.discard(entry.seq)

    def remove(self, entry: SpoolEntry) -> None:
        """The batch reached the database: forget it (a crash before this replays it again, harmlessly)."""
        with self._lock:
            self._busy.discard(entry.seq)
            if entry in self._entries:
                self._entries.remove(entry)
                self.bytes -= entry.size
                self.points -= entry.points
        entry.path.unlink(missing_ok=True)
