"""Built-in behaviours of the hub. Each depends on ``hub`` only and never speaks a protocol."""

from automations.opening_hours import OpeningHours

__all__ = ["OpeningHours"]
