"""The hub's own BACnet/IP application (bacpypes3), and the few facts about bacpypes3 the bridge and the
discovery both need.

bacpypes3 binds its UDP socket with ``SO_REUSEPORT`` and retries a failed bind forever in the background, so a
second process on the same address and port would silently share it (and datagrams would go to either). The
hub first binds the address itself without that option: a taken or foreign address is a clear error at start.

bacpypes3's errors (``ErrorRejectAbortNack``: Error, Reject and Abort PDUs) derive from ``BaseException``, not
``Exception``: every call into it catches them by name.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from typing import Any

from bacpypes3.apdu import AbortPDU, AbortReason, ErrorRejectAbortNack, RejectPDU
from bacpypes3.app import Application
from bacpypes3.basetypes import HostNPort, IPMode
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.vendor import get_vendor_info

from hub.errors import AdapterNotReady, ConfigError, Problem

__all__ = [
    "ErrorRejectAbortNack",
    "HubApplication",
    "bind_error",
    "close_application",
    "describe_error",
    "is_no_response",
    "is_unsupported_service",
    "parse_address",
    "property_type",
]

VENDOR_ID = 999  # bacpypes3's "no vendor" identifier for applications that have none assigned by ASHRAE
_STANDARD = get_vendor_info(0)


def parse_address(
    text: str, default_port: int = 47808, *, source: tuple[str, str] = ("environment", "BMHUB_BACNET_ADDRESS")
) -> tuple[str, int, int | None]:
    """``"192.0.2.10/24:47808"`` → ("192.0.2.10", 47808, 24); the prefix is None when not given. A malformed
    address is a ConfigError naming ``source`` (where it was given, which setting or argument)."""
    host, _, port_text = text.partition(":")
    host, _, prefix_text = host.partition("/")
    try:
        ipaddress.IPv4Address(host)
        port = int(port_text) if port_text else default_port
        prefix = int(prefix_text) if prefix_text else None
        if not 0 <= port <= 65535 or (prefix is not None and not 0 <= prefix <= 32):
            raise ValueError
    except ValueError:
        message = f"must be IPv4[/prefix][:port], e.g. 192.0.2.10/24:47808; got {text!r}"
        raise ConfigError([Problem(source[0], None, source[1], message)]) from None
    return host, port, prefix


def _setting_error(message: str) -> ConfigError:
    return ConfigError([Problem("environment", None, "BMHUB_BACNET_ADDRESS", message)])


def bind_error(host: str, port: int) -> OSError | None:
    """Why (host, port) cannot be bound, None if it can. Binding without SO_REUSEPORT fails if any socket holds
    the address, even one that would share it with SO_REUSEPORT as bacpypes3's do."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    return None


def _probe(host: str, port: int) -> None:
    """Bind (host, port) once without SO_REUSEPORT, so a taken or foreign address fails here, clearly."""
    exc = bind_error(host, port)
    if exc is not None:
        if exc.errno == errno.EADDRINUSE:
            raise AdapterNotReady(f"BACnet/IP address {host}:{port} is in use by another program")
        if exc.errno == errno.EADDRNOTAVAIL:
            raise _setting_error(f"{host} is not an address of this machine")
        raise AdapterNotReady(f"cannot bind BACnet/IP to {host}:{port}: {exc.strerror}")


class HubApplication:
    """A bacpypes3 Application with one device object and one BACnet/IP network port."""

    def __init__(
        self,
        address: str,
        *,
        instance: int,
        name: str = "bmhub",
        apdu_timeout: float = 1.0,
        apdu_retries: int = 1,
        objects: list[Any] | None = None,
        model: str = "bmhub",
        bbmd: str | None = None,
        ttl: int = 300,
    ) -> None:
        """``bbmd`` ("host[:port]") registers the application as a foreign device with that BBMD for ``ttl``
        seconds, so its broadcasts (Who-Is) reach the BBMD's networks."""
        host, port, prefix = parse_address(address)
        _probe(host, port)
        device = DeviceObject(
            objectIdentifier=("device", instance), objectName=name, vendorIdentifier=VENDOR_ID,
            vendorName="bmhub", modelName=model, apduTimeout=round(apdu_timeout * 1000),
            numberOfApduRetries=apdu_retries,
        )  # fmt: skip
        # Without a prefix, /32: no broadcast socket (loopback, or a hub that only talks unicast).
        port_object = NetworkPortObject(f"{host}/{32 if prefix is None else prefix}:{port}",
                                        objectIdentifier=("network-port", 1), objectName="NetworkPort-1")  # fmt: skip
        if bbmd is not None:
            bbmd_host, bbmd_port, _ = parse_address(bbmd, source=("command line", "--bbmd"))
            port_object.bacnetIPMode = IPMode.foreign
            port_object.fdBBMDAddress = HostNPort(f"{bbmd_host}:{bbmd_port}")
            port_object.fdSubscriptionLifetime = ttl
        self.app: Any = Application.from_object_list([device, port_object, *(objects or [])])
        self.requested = f"{host}:{port}"

    async def started(self, wait: float = 5.0) -> str:
        """Wait for the socket; the ``host:port`` it is bound to (the port chosen by the system for port 0)."""
        for link in self.app.link_layers.values():
            server: Any = getattr(link, "server", None)
            ready = getattr(server, "_local_transport_ready", None)
            if server is not None and ready is not None:
                await asyncio.wait_for(ready.wait(), wait)
                transport = server.local_transport
                host, port = transport.get_extra_info("sockname")[:2]
                return f"{host}:{port}"
        return self.requested

    async def registered(self, wait: float) -> bool:
        """For a foreign device: wait until the BBMD accepted the registration (False if it did not in time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            if any(getattr(link, "bbmdRegistrationStatus", None) == 0 for link in self.app.link_layers.values()):
                return True
            await asyncio.sleep(0.05)
        return False

    def close(self) -> None:
        close_application(self.app)


def close_application(app: Any) -> None:
    """Close a bacpypes3 application without leftovers: bacpypes3 keeps a timer per open transaction (a request
    waiting for its answer, a confirmed COV notification waiting for its ack) that resends on expiry, even
    after the socket closed, and each one then logs a traceback. Stop them, then close the sockets."""
    sap = getattr(app, "asap", None)
    for name in ("clientTransactions", "serverTransactions"):
        for transaction in list(getattr(sap, name, ())):
            transaction.stop_timer()
        getattr(sap, name, []).clear()
    app.close()


def is_no_response(exc: BaseException) -> bool:
    """The device did not answer (timeout after the retries)."""
    return isinstance(exc, AbortPDU) and exc.apduAbortRejectReason == AbortReason.noResponse


def is_unsupported_service(exc: BaseException) -> bool:
    """The device does not implement the service (Reject unrecognized-service, or an Error of class services)."""
    if isinstance(exc, RejectPDU):
        return str(exc.apduAbortRejectReason) == "unrecognized-service"
    error_class = getattr(exc, "errorClass", None)
    return error_class is not None and str(error_class) == "services"


def describe_error(exc: BaseException) -> str:
    """ "reject: unrecognized-service", "error object: unknown-object", "abort: no-response"."""
    if isinstance(exc, AbortPDU):
        return f"abort: {exc.apduAbortRejectReason}"
    if isinstance(exc, RejectPDU):
        return f"reject: {exc.apduAbortRejectReason}"
    error_class, error_code = getattr(exc, "errorClass", None), getattr(exc, "errorCode", None)
    if error_class is not None:
        return f"error {error_class}: {error_code}"
    return f"{type(exc).__name__}: {exc}"


def property_type(object_type: Any, prop: Any) -> Any:
    """The bacpypes3 class of ``prop`` of a standard ``object_type`` (None if the standard has none)."""
    cls = _STANDARD.get_object_class(object_type)
    return None if cls is None else cls.get_property_type(prop)


def to_address(host: str, port: int) -> Any:
    return Address(f"{host}:{port}")
