"""Simulated devices for the demo and tests."""

from adapters.sim.mqtt import MqttSimulator

__all__ = ["MqttSimulator"]
