"""The Modbus TCP bridge: one connection per gateway (host, port), every device behind it polled by unit id.

Polling. Each device is read every ``interval`` of its points (the smallest one; ``default_interval`` when none
has one), on the hub's clock. Its points are read with the fewest requests (:mod:`adapters.modbus._plan`), one
device after another: a gateway answers one request at a time anyway. Every poll publishes a ``Reading`` per
point; the state store keeps only the changes.

Failures, by what the device did:

=====================================================  ==========================================================
no answer, connection lost, gateway exception 10/11     device ``unreachable``: points ``offline`` and one
                                                        ``modbus:<device>:unreachable`` alarm, logged once; when
                                                        it answers again the alarm clears, logged once
exception response (illegal address ...)               :class:`ModbusDeviceError` (a ``DeviceError``): that
                                                        read's points ``bad``; a merged read refused with
                                                        "illegal data address" is split and the split kept
a value the type cannot hold (NaN, m10k low > 9999)    that point ``bad``
=====================================================  ==========================================================

Reconnecting is pymodbus's job (``reconnect_delay`` doubling up to ``reconnect_delay_max``): once connected,
a lost connection turns the gateway's devices offline and they are polled again as soon as pymodbus is back.
Only a gateway unreachable at start raises ``AdapterNotReady``, for the supervisor to retry.

Commands to writable points (coils, holding registers) are encoded with the point's type, order and scale,
written (function 5, 6, or 16 for two registers), read back and published; the ``CommandResult`` says what
the device holds now, or names the Modbus exception that refused it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from adapters._devices import DeviceHealth, DeviceState, Out, Tracked
from adapters.modbus._codec import CodecError, decode, decode_bit, encode, encode_bit
from adapters.modbus._errors import GATEWAY_CODES, ILLEGAL_DATA_ADDRESS, ModbusDeviceError, exception_name
from adapters.modbus._plan import Read, Slot, plan, split
from adapters.modbus._settings import ModbusSettings
from hub.adapter import AdapterContext
from hub.errors import AdapterNotReady
from hub.events import Command, CommandResult, Quality, Value
from hub.graph import DeviceInfo
from hub.site import ModbusDevice, ModbusDeviceType

__all__ = ["DeviceState", "ModbusBridge"]

log = logging.getLogger(__name__)

_ORIGIN = "adapter:modbus"


class _NoAnswer(AdapterNotReady):
    """A device, or the connection to its gateway, did not answer."""


@dataclass(eq=False, kw_only=True)
class _Device(Tracked):
    unit: int
    interval: float
    reads: list[Read]
    next_due: float = 0.0
    polls: int = 0
    requests: int = 0
    last_poll_ms: float | None = None

    def details(self) -> dict[str, Any]:
        return {
            "unit": self.unit, "state": self.state.value, "interval": self.interval,
            "reads_per_poll": len(self.reads), "polls": self.polls, "requests": self.requests,
            "errors": self.errors, "last_error": self.last_error, "last_poll_ms": self.last_poll_ms,
        }  # fmt: skip


def _raise_swallowed_cancel() -> None:
    """Re-raise a cancellation that pymodbus lost.

    pymodbus awaits answers with ``asyncio.wait_for``, which on Python 3.11 returns the result and drops a
    cancellation that arrives in the same loop iteration as the answer (CPython gh-86296, fixed in 3.12). The
    task then keeps polling and a stop waits forever; the task still counts the request, so raise it here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ModbusBridge:
    """Every Modbus device behind one TCP endpoint (a gateway or a device), over one pymodbus connection."""

    def __init__(
        self,
        ctx: AdapterContext,
        host: str,
        port: int,
        devices: Sequence[DeviceInfo],
        settings: ModbusSettings | None = None,
        *,
        connect_to: tuple[str, int] | None = None,
    ) -> None:
        """``connect_to`` overrides the address actually dialled (tests, port forwards); the site model's
        ``host:port`` stays the gateway's name in logs, alarms and details."""
        self._ctx = ctx
        self._clock = ctx.clock
        self._settings = s = settings or ModbusSettings()
        self.host, self.port = host, port
        self.target = connect_to or (host, port)
        self.name = f"modbus:{host}:{port}"
        self._where = f"{host}:{port}" + (f" (dialled at {self.target[0]}:{self.target[1]})" if connect_to else "")
        self._health = DeviceHealth(ctx, "modbus", "Modbus device", log)
        self._devices: list[_Device] = []
        self._points: dict[str, tuple[_Device, Slot]] = {}
        for info in devices:
            if not isinstance(info.spec, ModbusDevice) or not isinstance(info.type, ModbusDeviceType):
                raise TypeError(f"device {info.id} is not a Modbus device")
            slots = [Slot(pid, spec) for spec, pid in zip(info.type.points, info.points, strict=True)]
            intervals = [p.interval for p in info.type.points if p.interval is not None]
            dev = _Device(id=info.id, label=f"unit {info.spec.unit_id} at {self._where}", points=info.points,
                          unit=info.spec.unit_id, interval=min(intervals, default=s.default_interval),
                          reads=plan(slots, max_gap=s.max_gap, max_bit_gap=s.max_bit_gap))  # fmt: skip
            self._devices.append(dev)
            self._points.update((slot.point, (dev, slot)) for slot in slots)
        self._client: AsyncModbusTcpClient | None = None
        self._wake = asyncio.Event()
        self._pending = asyncio.Event()
        self._outbox: deque[tuple[Command, _Device, Slot, list[int] | bool]] = deque()
        self.connects = 0
        self.polls = 0
        self.requests = 0
        self.commands = 0
        ctx.bus.subscribe(Command, self._on_command, name=f"{self.name}:commands", maxsize=s.command_queue * 10)

    # ------------------------------------------------------------------ service
    async def run(self, ready: Callable[[], None]) -> None:
        s = self._settings
        host, port = self.target
        client = AsyncModbusTcpClient(
            host, port=port, name=self.name, timeout=s.timeout, retries=s.retries,
            reconnect_delay=s.reconnect_delay, reconnect_delay_max=s.reconnect_delay_max,
            trace_connect=self._on_connect,
        )  # fmt: skip
        try:
            connected = await client.connect()
            _raise_swallowed_cancel()
            if not connected:
                reason = f"cannot connect to the Modbus gateway at {self._where}"
                down = [d for d in self._devices if self._health.offline(d, reason)]
                raise AdapterNotReady(reason + (f"; {len(down)} device(s) now offline" if down else ""))
            self._client = client
            reads = sum(len(d.reads) for d in self._devices)
            log.info("connected to Modbus gateway %s: %d device(s), %d read(s) per round of polls", self._where,
                     len(self._devices), reads)  # fmt: skip
            ready()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._poll_loop(client), name=f"{self.name}:poll")
                tg.create_task(self._write_loop(client), name=f"{self.name}:write")
        finally:
            self._client = None
            while self._outbox:
                self._result(self._outbox.popleft()[0], False, f"not sent: the connection to {self._where} closed")
            reconnect = client.ctx.reconnect_task
            client.close()  # also stops pymodbus's reconnect task; wait for it so no task outlives the service
            if reconnect is not None and not reconnect.done():
                await asyncio.wait([reconnect], timeout=1.0)

    def _on_connect(self, connected: bool) -> None:
        """pymodbus's connect/disconnect callback. A lost connection turns every device offline at once (a request
        in flight would only time out); once pymodbus is back, the unreachable devices are polled straight away."""
        if connected:
            self.connects += 1
            now = self._clock.monotonic()
            for dev in self._devices:
                if dev.state is DeviceState.UNREACHABLE:
                    dev.next_due = now
        elif self._client is not None:
            reason = f"connection to {self._where} lost"
            self._health.log_changes(
                [(d, reason) for d in self._devices if self._health.offline(d, reason)],
                [],
                f"Modbus gateway {self._where}",
            )
        self._wake.set()

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds`` on the hub's clock, or less if the connection goes or comes back."""
        if not self._wake.is_set():
            sleeper = asyncio.create_task(self._clock.sleep(seconds), name=f"{self.name}:sleep")
            waker = asyncio.create_task(self._wake.wait(), name=f"{self.name}:wake")
            try:
                await asyncio.wait([sleeper, waker], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
                await asyncio.gather(sleeper, waker, return_exceptions=True)
        self._wake.clear()

    # ------------------------------------------------------------------ polling
    async def _poll_loop(self, client: AsyncModbusTcpClient) -> None:
        clock = self._clock
        while True:
            now = clock.monotonic()
            due = [d for d in self._devices if d.next_due <= now]
            down: list[tuple[_Device, str]] = []
            up: list[_Device] = []
            for dev in due:
                if not client.connected:
                    break
                await self._poll(dev, down, up)
            if not client.connected:
                reason = f"no connection to {self._where}"
                down += [(d, reason) for d in self._devices if self._health.offline(d, reason)]
            self._health.log_changes(down, up, f"Modbus gateway {self._where}")
            now = clock.monotonic()
            for dev in due:
                if dev.next_due <= now:  # skip the periods a slow round overran instead of catching up in a burst
                    dev.next_due += (math.floor((now - dev.next_due) / dev.interval) + 1) * dev.interval
            await self._nap(max(0.0, min(d.next_due for d in self._devices) - clock.monotonic()))

    async def _poll(self, dev: _Device, down: list[tuple[_Device, str]], up: list[_Device]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        dev.polls += 1
        self.polls += 1
        out: Out = []
        try:
            for read in list(dev.reads):  # _read may split one of them in place
                await self._read(dev, read, out)
        except _NoAnswer as exc:
            dev.errors += 1
            dev.last_error = str(exc)
            if self._health.offline(dev, str(exc)):
                down.append((dev, str(exc)))
            return
        finally:
            dev.last_poll_ms = round((loop.time() - started) * 1000, 2)
        self._health.publish(out)
        if self._health.answered(dev, out):
            up.append(dev)

    async def _read(self, dev: _Device, read: Read, out: Out) -> None:
        """Read ``read`` and append its points' values (or ``bad``) to ``out``. Raises ``_NoAnswer``."""
        client = self._client
        if client is None:
            raise _NoAnswer(f"no connection to {self._where}")
        fn = {
            "holding": client.read_holding_registers, "input": client.read_input_registers,
            "coil": client.read_coils, "discrete": client.read_discrete_inputs,
        }[read.table]  # fmt: skip
        what = f"read {read}"
        try:
            response = await self._request(dev, what, lambda: fn(read.start, count=read.count, device_id=dev.unit))
        except ModbusDeviceError as exc:
            if exc.code == ILLEGAL_DATA_ADDRESS and read in dev.reads and len(parts := split(read)) > 1:
                i = dev.reads.index(read)
                dev.reads[i : i + 1] = parts
                log.info("Modbus device %s refused %s as one read (%s); reading it as %d reads from now on",
                         dev.id, read, exception_name(exc.code), len(parts))  # fmt: skip
                for part in parts:
                    await self._read(dev, part, out)
                return
            self._health.failed(dev, what, str(exc))
            out.extend((s.point, None, Quality.BAD) for s in read.slots)
            return
        values: Sequence[int] | Sequence[bool] = response.bits if read.bits else response.registers
        if len(values) < read.count:
            self._health.failed(dev, what, f"device {dev.id}: {len(values)} value(s) in the answer to {what}")
            out.extend((s.point, None, Quality.BAD) for s in read.slots)
            return
        self._health.cleared(dev, what)
        for slot in read.slots:
            at = slot.start - read.start
            try:
                if read.bits:
                    value: Value = decode_bit(slot.spec, values[at])
                else:
                    value = decode(slot.spec, [int(w) for w in values[at : at + slot.spec.width]])
            except CodecError as exc:
                self._health.failed(dev, slot.point, f"point {slot.point}: {exc}")
                out.append((slot.point, None, Quality.BAD))
                continue
            self._health.cleared(dev, slot.point)
            out.append((slot.point, value, Quality.GOOD))

    async def _request(self, dev: _Device, what: str, call: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        """One Modbus request, counted, with pymodbus's errors turned into the hub's."""
        self.requests += 1
        dev.requests += 1
        try:
            response = await call()  # pymodbus raises ConnectionException at once when not connected
        except ConnectionException as exc:
            raise _NoAnswer(f"no connection to {self._where}") from exc
        except ModbusException as exc:  # ModbusIOException: no (usable) answer after the retries
            raise _NoAnswer(f"unit {dev.unit} at {self._where} did not answer {what}: {exc}") from exc
        finally:
            _raise_swallowed_cancel()
        if response.isError():
            code = int(response.exception_code)
            if code in GATEWAY_CODES:
                raise _NoAnswer(f"gateway {self._where} answered {what} for unit {dev.unit} with exception {code} "
                                f"({exception_name(code)})")  # fmt: skip
            raise ModbusDeviceError(dev.id, code, f"{what} of unit {dev.unit}")
        return response

    # ------------------------------------------------------------------ commands
    def _on_command(self, cmd: Command) -> None:
        target = self._points.get(cmd.point)
        if target is None:
            return  # another gateway's or another protocol's point
        dev, slot = target
        spec = slot.spec
        if not spec.writable:
            self._result(cmd, False, f"point is read-only ({spec.table} {spec.address}; writable: false)")
            return
        try:
            payload: list[int] | bool
            if spec.type == "bool":
                payload = encode_bit(spec, cmd.value)
            else:
                payload = encode(spec, cmd.value)
                held = decode(spec, payload)
                if (spec.min is not None and held < spec.min) or (spec.max is not None and held > spec.max):
                    raise CodecError(f"{held} is outside {spec.min}-{spec.max} (min/max of point {spec.id})")
        except CodecError as exc:
            self._result(cmd, False, str(exc))
            return
        client = self._client
        if client is None or not client.connected:
            self._result(cmd, False, f"not sent: no connection to the Modbus gateway at {self._where}")
            return
        if len(self._outbox) >= self._settings.command_queue:
            dropped = self._outbox.popleft()[0]
            self._result(dropped, False, f"dropped: {self._settings.command_queue} commands already waiting")
        self._outbox.append((cmd, dev, slot, payload))
        self._pending.set()

    async def _write_loop(self, client: AsyncModbusTcpClient) -> None:
        while True:
            while not self._outbox:
                self._pending.clear()
                await self._pending.wait()
            cmd, dev, slot, payload = self._outbox.popleft()
            await self._write(client, cmd, dev, slot, payload)

    async def _write(
        self, client: AsyncModbusTcpClient, cmd: Command, dev: _Device, slot: Slot, payload: list[int] | bool
    ) -> None:
        spec = slot.spec
        what = f"write {spec.table} {spec.address}"
        self.commands += 1
        address, unit = spec.address, dev.unit

        def call() -> Awaitable[ModbusPDU]:
            if isinstance(payload, bool):
                return client.write_coil(address, payload, device_id=unit)
            if len(payload) == 1:  # function 6: what single-register devices accept
                return client.write_register(address, payload[0], device_id=unit)
            return client.write_registers(address, payload, device_id=unit)

        try:
            await self._request(dev, what, call)
        except (ModbusDeviceError, _NoAnswer) as exc:
            dev.errors += 1
            dev.last_error = str(exc)
            log.warning("command %s (%s = %r) failed: %s", cmd.id, cmd.point, cmd.value, exc)
            self._result(cmd, False, str(exc))
            return
        out: Out = []
        try:
            await self._read(dev, Read(spec.table, spec.address, spec.width, (slot,)), out)
        except _NoAnswer as exc:
            self._result(cmd, True, f"{what} of unit {dev.unit} done; no answer to the read-back: {exc}")
            return
        self._health.publish(out, cmd.context.child(_ORIGIN))
        [(_, value, quality)] = out
        back = f"read back {value!r}" if quality is Quality.GOOD else "the read-back was refused"
        self._result(cmd, True, f"{what} of unit {dev.unit} done; {back}")

    def _result(self, cmd: Command, ok: bool, detail: str) -> None:
        self._ctx.bus.publish(CommandResult(command_id=cmd.id, point=cmd.point, ok=ok, detail=detail,
                                            context=cmd.context.child(_ORIGIN), time=self._clock.now()))  # fmt: skip

    # ------------------------------------------------------------------ status
    def details(self) -> dict[str, Any]:
        """Per-device counters and states, and the gateway's totals (``requests`` counts every request sent)."""
        client = self._client
        return {
            "endpoint": f"{self.host}:{self.port}",
            "target": "{}:{}".format(*self.target),
            "connected": bool(client is not None and client.connected),
            "connects": self.connects,
            "polls": self.polls,
            "requests": self.requests,
            "commands": self.commands,
            "errors": sum(d.errors for d in self._devices),
            "reads_per_round": sum(len(d.reads) for d in self._devices),
            "devices": {d.id: d.details() for d in self._devices},
        }
