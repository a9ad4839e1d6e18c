"""Pydantic models of ``site_model.yaml``: exactly what the file may say, nothing more.

Every model forbids unknown keys and is frozen. Devices and device types are unions discriminated by
``protocol``, so a mistake is reported against the branch the author meant (a Modbus device's ``unit_id``),
not against every protocol. Cross-references (does that floor exist, is that escape door a door) are checked
in :mod:`hub.site._checks`, once the structure is known to be sound.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, time
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


def _fail(message: str) -> PydanticCustomError:
    # Braces in a value would be read as template fields by pydantic: escape them.
    return PydanticCustomError("bmhub", message.replace("{", "{{").replace("}", "}}"))


def _check_id(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", value):
        raise _fail(f"must be 1-64 of a-z 0-9 - _ starting with a letter or digit, got {value!r}")
    return value


def _range(lo: int, hi: int) -> AfterValidator:
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise _fail(f"must be {lo}-{hi}, got {value}")
        return value

    return AfterValidator(check)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(f"unknown IANA time zone {value!r}") from None
    return value


def _check_topic(value: str) -> str:
    if any(c in value for c in "#+\0") or value.startswith("/") or value.endswith("/"):
        raise _fail(f"MQTT topic must not contain + # or NUL nor start/end with '/', got {value!r}")
    return value


Id = Annotated[str, AfterValidator(_check_id)]
SecurityLevel = Annotated[int, _range(0, 4)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=86400)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------------------
# Vocabularies. One word per concept: these names appear in the graph, MQTT topics and InfluxDB tags.


class BuildingKind(StrEnum):
    BUILDING = "building"
    GROUNDS = "grounds"
    DATA_CENTRE = "data-centre"


class ZoneUse(StrEnum):
    LOBBY = "lobby"
    COUNTER = "counter"
    WAITING = "waiting"
    OFFICE = "office"
    MEETING = "meeting"
    CONSULTATION = "consultation"
    COLLABORATION = "collaboration"
    COUNCIL_CHAMBER = "council-chamber"
    COMMITTEE = "committee"
    ANTE_ROOM = "ante-room"
    CORRIDOR = "corridor"
    STAIR = "stair"
    ELEVATOR_HALL = "elevator-hall"
    MACHINE_ROOM = "machine-room"
    ELECTRICAL = "electrical"
    PLANT = "plant"
    STORAGE = "storage"
    DATA_HALL = "data-hall"
    OPERATIONS = "operations"
    OUTDOOR = "outdoor"
    PARKING = "parking"
    CHILDCARE = "childcare"
    HEALTH = "health"


class DeviceKind(StrEnum):
    AHU = "ahu"
    VAV = "vav"
    FCU = "fcu"
    LIGHTING = "lighting"
    OCCUPANCY_SENSOR = "occupancy-sensor"
    ENV_SENSOR = "env-sensor"
    DOOR_READER = "door-reader"
    DOOR = "door"
    FLAPPER_GATE = "flapper-gate"
    SIGNAGE = "signage"
    WIFI_CONTROLLER = "wifi-controller"
    UPS = "ups"
    GENERATOR = "generator"
    PDU = "pdu"
    COOLING = "cooling"
    POWER_METER = "power-meter"
    ALERT_RECEIVER = "alert-receiver"
    FIRE_PANEL = "fire-panel"


DOOR_KINDS = frozenset({DeviceKind.DOOR_READER, DeviceKind.DOOR, DeviceKind.FLAPPER_GATE})
POWER_SOURCE_KINDS = frozenset({DeviceKind.UPS, DeviceKind.PDU, DeviceKind.GENERATOR})


class PointKind(StrEnum):
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    CO2 = "co2"
    PRESSURE = "pressure"
    FLOW = "flow"
    SETPOINT = "setpoint"
    MODE = "mode"
    FAN = "fan"
    FAN_SPEED = "fan-speed"
    DAMPER = "damper"
    VALVE = "valve"
    STATUS = "status"
    ALARM = "alarm"
    FAULT = "fault"
    OCCUPANCY = "occupancy"
    PEOPLE_COUNT = "people-count"
    LIGHT = "light"
    DIMMER = "dimmer"
    ILLUMINANCE = "illuminance"
    DOOR = "door"
    LOCK = "lock"
    CARD = "card"
    ACCESS = "access"
    FORCED = "forced"
    HELD_OPEN = "held-open"
    CONTENT = "content"
    LANGUAGE = "language"
    EMERGENCY = "emergency"
    QUEUE_NUMBER = "queue-number"
    CAPTION = "caption"
    ACK = "ack"
    WIFI_MODE = "wifi-mode"
    CLIENTS = "clients"
    POWER = "power"
    ENERGY = "energy"
    VOLTAGE = "voltage"
    CURRENT = "current"
    FREQUENCY = "frequency"
    POWER_FACTOR = "power-factor"
    BATTERY_CHARGE = "battery-charge"
    BATTERY_RUNTIME = "battery-runtime"
    LOAD = "load"
    UPS_STATUS = "ups-status"
    FUEL_LEVEL = "fuel-level"
    RUN = "run"
    CONTACT = "contact"


ValueType = Literal["bool", "number", "text"]

_BOOL_KINDS = frozenset({
    PointKind.OCCUPANCY, PointKind.DOOR, PointKind.LOCK, PointKind.FORCED, PointKind.HELD_OPEN,
    PointKind.EMERGENCY, PointKind.ALARM, PointKind.RUN, PointKind.CONTACT, PointKind.LIGHT, PointKind.FAN,
})  # fmt: skip
_TEXT_KINDS = frozenset({
    PointKind.CARD, PointKind.ACCESS, PointKind.CONTENT, PointKind.LANGUAGE, PointKind.CAPTION, PointKind.ACK,
    PointKind.WIFI_MODE, PointKind.MODE, PointKind.STATUS, PointKind.UPS_STATUS, PointKind.QUEUE_NUMBER,
})  # fmt: skip


def value_type(kind: PointKind) -> ValueType:
    """What values a point of ``kind`` carries when nothing else (a ``values`` map, ``states``) says."""
    if kind in _BOOL_KINDS:
        return "bool"
    if kind in _TEXT_KINDS:
        return "text"
    return "number"


class Capability(StrEnum):
    CARD = "card"
    BIOMETRIC = "biometric"
    PIN = "pin"
    FAIL_SAFE = "fail-safe"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


# --------------------------------------------------------------------------------------------------------
# Site, calendar, buildings


class JmaArea(_Model):
    """JMA earthquake forecast area of the site (緊急地震速報/地震情報 細分区域), used to filter alerts."""

    name: str
    code: Annotated[int, Field(ge=100, le=999)]


class SiteInfo(_Model):
    id: Id
    name: str
    name_ja: str | None = None
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "Asia/Tokyo"
    city_code: Annotated[str, Field(pattern=r"^\d{6,7}$")]
    jma_area: JmaArea
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z]+)?$")]] = Field(min_length=1)


def _month_day(value: str) -> str:
    try:
        month, day = (int(p) for p in value.split("-"))
        date(2024, month, day)  # a leap year, so 02-29 is allowed
    except ValueError:
        raise _fail(f"must be a day of the year as MM-DD, got {value!r}") from None
    return f"{month:02d}-{day:02d}"


MonthDay = Annotated[str, AfterValidator(_month_day)]


def _local_time(value: object) -> object:
    # YAML or JSON could hand pydantic a number (seconds) or an offset time; opening hours are local "HH:MM".
    if not isinstance(value, str) or not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?", value):
        raise _fail(f"must be a local time of day as HH:MM, got {value!r}")
    return value


LocalTime = Annotated[time, BeforeValidator(_local_time)]


class Closure(_Model):
    """A yearly closure, e.g. the year-end holidays 12-29 to 01-03 (the range may wrap the new year)."""

    name: str
    start: MonthDay
    end: MonthDay


class BusinessCalendar(_Model):
    """When the halls are open to the public. Outside these hours the site is in ``after-hours`` mode."""

    open: LocalTime
    close: LocalTime
    days: list[Weekday] = Field(min_length=1)
    public_holidays: Literal["JP"] | None = "JP"
    closures: list[Closure] = []
    extra_closed: list[date] = []
    extra_open: list[date] = []

    @model_validator(mode="after")
    def _open_before_close(self) -> BusinessCalendar:
        if self.open >= self.close:
            raise _fail(f"open ({self.open:%H:%M}) must be before close ({self.close:%H:%M})")
        if len(set(self.days)) != len(self.days):
            raise _fail("days lists a weekday twice")
        both = sorted(set(self.extra_open) & set(self.extra_closed))
        if both:
            raise _fail(f"{', '.join(map(str, both))} in both extra_open and extra_closed")
        return self


class Floor(_Model):
    id: Id
    name: str
    level: Annotated[int, Field(ge=-10, le=200)]


class Building(_Model):
    id: Id
    name: str
    name_ja: str | None = None
    kind: BuildingKind = BuildingKind.BUILDING
    floors: list[Floor] = Field(min_length=1)


# --------------------------------------------------------------------------------------------------------
# Points (declared once per device type)


class _PointBase(_Model):
    id: Id
    kind: PointKind
    unit: Annotated[str, Field(max_length=16)] | None = None
    writable: bool = False
    interval: Seconds | None = Field(
        default=None, description="Expected seconds between readings; a point silent for 2x this is stale."
    )
    min: float | None = None
    max: float | None = None
    states: list[str] | None = Field(default=None, description="State texts of a multi-state point, from 1.")
    description: str | None = None

    @model_validator(mode="after")
    def _min_below_max(self) -> _PointBase:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _fail(f"min ({self.min}) must not exceed max ({self.max})")
        return self


BACNET_OBJECT_TYPES = frozenset({
    "analog-input", "analog-output", "analog-value",
    "binary-input", "binary-output", "binary-value",
    "multi-state-input", "multi-state-output", "multi-state-value",
    "accumulator", "loop", "schedule", "calendar", "trend-log",
    "integer-value", "positive-integer-value", "large-analog-value", "characterstring-value",
    "access-door", "access-point", "life-safety-point", "life-safety-zone",
})  # fmt: skip
_READ_ONLY_BACNET = ("analog-input", "binary-input", "multi-state-input", "accumulator")


def _bacnet_object(value: str) -> str:
    m = re.fullmatch(r"([a-z-]+):(\d+)", value)
    if not m or m.group(1) not in BACNET_OBJECT_TYPES:
        raise _fail(f"must be a BACnet object as type:instance (e.g. analog-input:1), got {value!r}")
    if int(m.group(2)) > 4194302:
        raise _fail(f"object instance must be 0-4194302, got {value!r}")
    return value


class BacnetPoint(_PointBase):
    object: Annotated[str, AfterValidator(_bacnet_object)]
    property: str = "present-value"
    cov: bool = Field(default=True, description="Subscribe to COV; the adapter falls back to polling if refused.")

    @model_validator(mode="after")
    def _inputs_read_only(self) -> BacnetPoint:
        if self.writable and self.object.startswith(_READ_ONLY_BACNET):
            raise _fail(f"{self.object.split(':')[0]} objects are read-only; writable must be false")
        return self


# int32-m10k / uint32-m10k: two registers read as high × 10000 + low (ION and other meters' "modulo 10k").
ModbusType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "int32-m10k", "uint32-m10k"]


class ModbusPoint(_PointBase):
    table: Literal["holding", "input", "coil", "discrete"]
    address: Annotated[int, Field(ge=0, le=65535)]
    type: ModbusType = "uint16"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def width(self) -> int:
        """Registers (or bits) the point occupies."""
        return 1 if self.type in ("bool", "int16", "uint16") else 2

    @model_validator(mode="after")
    def _table_matches_type(self) -> ModbusPoint:
        bits = self.table in ("coil", "discrete")
        if bits != (self.type == "bool"):
            want = "bool" if bits else "a register type (int16 ... float32)"
            raise _fail(f"type must be {want} for table {self.table}, got {self.type}")
        if self.writable and self.table in ("input", "discrete"):
            raise _fail(f"{self.table} table is read-only; writable must be false")
        if self.address + self.width - 1 > 65535:
            raise _fail(f"{self.type} at {self.address} runs past register 65535")
        return self


class MqttPoint(_PointBase):
    topic: Annotated[str, AfterValidator(_check_topic)] = Field(
        description="State topic relative to the device's topic ('' for the device topic itself)."
    )
    field: str | None = Field(default=None, description="JSON field (dotted path) holding the value.")
    values: dict[str, bool | int | float | str] | None = Field(
        default=None, description="Payload text → value mapping for enumerated payloads."
    )
    scale: float = 1.0
    command_topic: Annotated[str, AfterValidator(_check_topic)] | None = Field(
        default=None, description="Command topic relative to the device's topic; required if writable."
    )

    @model_validator(mode="after")
    def _writable_has_command_topic(self) -> MqttPoint:
        if self.writable and self.command_topic is None:
            raise _fail("a writable MQTT point needs command_topic")
        return self


class NutPoint(_PointBase):
    var: Annotated[str, Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")]


# --------------------------------------------------------------------------------------------------------
# Device types: a type declares its points once; devices name a type and give the address.


class _DeviceTypeBase(_Model):
    kind: DeviceKind
    description: str | None = None
    vendor: str | None = None
    model: str | None = None
    capabilities: list[Capability] = []


class BacnetDeviceType(_DeviceTypeBase):
    protocol: Literal["bacnet"]
    points: list[BacnetPoint] = Field(min_length=1)


class ModbusDeviceType(_DeviceTypeBase):
    protocol: Literal["modbus"]
    points: list[ModbusPoint] = Field(min_length=1)


class MqttDeviceType(_DeviceTypeBase):
    protocol: Literal["mqtt"]
    points: list[MqttPoint] = Field(min_length=1)


class NutDeviceType(_DeviceTypeBase):
    protocol: Literal["nut"]
    points: list[NutPoint] = Field(min_length=1)


DeviceType = Annotated[
    BacnetDeviceType | ModbusDeviceType | MqttDeviceType | NutDeviceType, Field(discriminator="protocol")
]
Point = BacnetPoint | ModbusPoint | MqttPoint | NutPoint


# --------------------------------------------------------------------------------------------------------
# Devices


class _DeviceBase(_Model):
    id: Id
    type: Id
    name: str | None = None
    powered_by: list[Id] = Field(default=[], description="Power sources (UPS, PDU, generator) feeding it.")


def _ipv4_port(value: str) -> str:
    host, _, port = value.partition(":")
    try:
        ipaddress.IPv4Address(host)
        if port and not 1 <= int(port) <= 65535:
            raise ValueError
    except ValueError:
        raise _fail(f"must be IPv4[:port] (e.g. 192.0.2.10:47808), got {value!r}") from None
    return value


class BacnetDevice(_DeviceBase):
    protocol: Literal["bacnet"]
    instance: Annotated[int, Field(ge=0, le=4194302)]
    address: Annotated[str, AfterValidator(_ipv4_port)] | None = Field(
        default=None, description="IPv4[:port]; omitted, the device is found by Who-Is on its instance."
    )


class ModbusDevice(_DeviceBase):
    protocol: Literal["modbus"]
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Port = 502
    unit_id: Annotated[int, Field(ge=0, le=247)] = 1


class MqttDevice(_DeviceBase):
    protocol: Literal["mqtt"]
    topic: Annotated[str, Field(min_length=1), AfterValidator(_check_topic)]


class NutDevice(_DeviceBase):
    protocol: Literal["nut"]
    host: Annotated[str, Field(min_length=1, max_length=253)] = "127.0.0.1"
    port: Port = 3493
    ups: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]


Device = Annotated[BacnetDevice | ModbusDevice | MqttDevice | NutDevice, Field(discriminator="protocol")]


# --------------------------------------------------------------------------------------------------------
# Zones and the site


class Zone(_Model):
    id: Id
    name: str
    name_ja: str | None = None
    floor: Id
    use: ZoneUse
    security_level: SecurityLevel
    capacity: Annotated[int, Field(ge=1, le=100000)] | None = None
    bookable: bool = False
    adjacent: list[Id] = []
    escape_route: list[Id] = Field(default=[], description="Door devices people leave this zone through.")
    devices: list[Device] = []


class SiteModel(_Model):
    """The whole of ``site_model.yaml``."""

    site: SiteInfo
    calendar: BusinessCalendar
    device_types: dict[Id, DeviceType]
    buildings: list[Building] = Field(min_length=1)
    zones: list[Zone] = Field(min_length=1)
