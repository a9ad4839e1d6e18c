"""Protocol bridges (mqtt, bacnet, modbus, nut). The only place protocol libraries are imported."""

__all__: list[str] = []
