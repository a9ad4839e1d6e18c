"""Modbus TCP: meters, generators, PDUs, CRAHs, rack sensors and DALI gateways, polled per gateway connection."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from adapters.modbus._bridge import DeviceState, ModbusBridge
from adapters.modbus._errors import ModbusDeviceError
from adapters.modbus._settings import ModbusSettings
from hub.adapter import AdapterContext, Stage
from hub.graph import DeviceInfo
from hub.site import ModbusDevice
from hub.supervisor import Service

__all__ = ["DeviceState", "ModbusBridge", "ModbusDeviceError", "ModbusSettings", "create", "endpoints_of"]


def endpoints_of(devices: Sequence[DeviceInfo]) -> dict[tuple[str, int], list[DeviceInfo]]:
    """Modbus devices grouped by the TCP endpoint (host, port) that reaches them, in site-model order."""
    groups: dict[tuple[str, int], list[DeviceInfo]] = {}
    for dev in devices:
        if isinstance(dev.spec, ModbusDevice):
            groups.setdefault((dev.spec.host, dev.spec.port), []).append(dev)
    return groups


def create(
    ctx: AdapterContext,
    settings: ModbusSettings | None = None,
    *,
    endpoints: Mapping[tuple[str, int], tuple[str, int]] | None = None,
) -> Sequence[tuple[Stage, Service]]:
    """One bridge per gateway: a gateway with several unit ids is one connection.

    ``endpoints`` maps a site-model ``(host, port)`` to the address to dial instead (tests, port forwards).
    """
    settings = settings or ModbusSettings()
    # pymodbus logs every failed reconnect attempt and every unanswered request; the bridge reports the same
    # once per device (unreachable / answers again). Quiet it unless someone configured its logger.
    library = logging.getLogger("pymodbus")
    if library.level == logging.NOTSET:
        library.setLevel(logging.CRITICAL)
    endpoints = endpoints or {}
    return [
        ("adapters", ModbusBridge(ctx, host, port, devices, settings, connect_to=endpoints.get((host, port))))
        for (host, port), devices in endpoints_of(ctx.graph.find_devices(protocol="modbus")).items()
    ]
