"""Simulated devices for the demo and tests, built from the site model (one module per protocol)."""

from adapters.sim.bacnet import BacnetSimulator
from adapters.sim.modbus import ModbusSimulator
from adapters.sim.mqtt import MqttSimulator
from adapters.sim.nut import NutSimulator

__all__ = ["BacnetSimulator", "ModbusSimulator", "MqttSimulator", "NutSimulator"]
