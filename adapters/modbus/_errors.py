"""Modbus exception responses as the hub's :class:`~hub.errors.DeviceError`."""

from __future__ import annotations

from hub.errors import DeviceError

__all__ = ["EXCEPTION_NAMES", "ModbusDeviceError", "exception_name"]

# Modbus application protocol v1.1b3, section 7 (MODBUS Exception Codes).
EXCEPTION_NAMES: dict[int, str] = {
    1: "ILLEGAL FUNCTION",
    2: "ILLEGAL DATA ADDRESS",
    3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER DEVICE BUSY",
    8: "MEMORY PARITY ERROR",
    10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}
ILLEGAL_DATA_ADDRESS = 2
GATEWAY_CODES = frozenset({10, 11})  # the gateway answered for a device that did not: the device is unreachable


def exception_name(code: int) -> str:
    return EXCEPTION_NAMES.get(code, "UNKNOWN EXCEPTION")


class ModbusDeviceError(DeviceError):
    """A device answered a request with a Modbus exception response.

    ``code`` is the exception code (2: illegal data address ...); ``request`` says what was asked.
    """

    def __init__(self, device: str, code: int, request: str) -> None:
        self.code = code
        self.request = request
        super().__init__(device, f"Modbus exception {code} ({exception_name(code)}) to {request}")
