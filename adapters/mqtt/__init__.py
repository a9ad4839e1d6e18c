"""MQTT: field devices (occupancy, doors, signage, Wi-Fi), the hub's outward contract, and the embedded broker."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.mqtt._bridge import MqttBridge, Rejects
from adapters.mqtt._broker import EmbeddedBroker
from adapters.mqtt._settings import MqttSettings
from hub.adapter import AdapterContext, Stage
from hub.supervisor import Service

__all__ = ["EmbeddedBroker", "MqttBridge", "MqttSettings", "Rejects", "create"]


def create(ctx: AdapterContext, settings: MqttSettings | None = None) -> Sequence[tuple[Stage, Service]]:
    """The bridge, and the embedded broker in front of it when no broker is configured."""
    settings = settings or MqttSettings()
    if settings.host is not None:
        host, port = settings.host, settings.port
        return [("adapters", MqttBridge(ctx, settings, lambda: (host, port)))]
    broker = EmbeddedBroker(settings.broker_port)
    embedded = settings.model_copy(update={"protocol": "3.1.1"})  # amqtt speaks MQTT 3.1.1 only
    return [("core", broker), ("adapters", MqttBridge(ctx, embedded, lambda: (broker.host, broker.port)))]
