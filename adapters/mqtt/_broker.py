"""The embedded MQTT broker (amqtt) for the quick start: 127.0.0.1 only, MQTT 3.1.1 only.

If the configured port is taken (a system Mosquitto on 1883, say), it takes a free one and says so; the
bridge asks :attr:`EmbeddedBroker.port` once the broker is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from amqtt.broker import Broker

from hub.errors import AdapterNotReady

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    name = "mqtt-broker"

    def __init__(self, port: int = 1883) -> None:
        self.wanted = port
        self.host = HOST
        self.port = port
        # amqtt logs every connection and packet at INFO; the hub's log says what matters.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # At shutdown the clients leave before the broker; amqtt then warns about every PUBACK still owed.
        logging.getLogger("amqtt.mqtt.protocol.handler").setLevel(logging.ERROR)

    async def run(self, ready: Callable[[], None]) -> None:
        self.port = self.wanted if self.wanted and _port_free(self.wanted) else _any_free_port()
        if self.wanted and self.port != self.wanted:
            log.warning("port %d is taken; the embedded MQTT broker listens on %s:%d instead",
                        self.wanted, HOST, self.port)  # fmt: skip
        broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        })  # fmt: skip
        try:
            await broker.start()
        except Exception as exc:
            raise AdapterNotReady(f"embedded MQTT broker could not start on {HOST}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) on %s:%d", HOST, self.port)
        try:
            ready()
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await broker.shutdown()
