"""Time series out of the hot path: readings, state changes, alarms, access decisions, mode and occupancy
changes, batched to InfluxDB (v1 or v2 API) with an on-disk spool while it is away, or to an embedded SQLite
store when no InfluxDB is configured. Schema, settings and guarantees: docs/influxdb.md."""

from hub.history._embedded import EmbeddedStore, OccupancyHour, Sample
from hub.history._influx import Backend, InfluxV1, InfluxV2, WriteError
from hub.history._lineprotocol import Unencodable, encode_line, series_key, split_points, time_ns
from hub.history._schema import EVENT_TYPES, LineSchema
from hub.history._service import EMBEDDED_FILE, SPOOL_DIR, EmbeddedHistory, create_history
from hub.history._settings import HistorySettings, InfluxSettings
from hub.history._spool import Spool
from hub.history._writer import SPOOL_ALARM, InfluxHistory

__all__ = [
    "EMBEDDED_FILE",
    "EVENT_TYPES",
    "SPOOL_ALARM",
    "SPOOL_DIR",
    "Backend",
    "EmbeddedHistory",
    "EmbeddedStore",
    "HistorySettings",
    "InfluxHistory",
    "InfluxSettings",
    "InfluxV1",
    "InfluxV2",
    "LineSchema",
    "OccupancyHour",
    "Sample",
    "Spool",
    "Unencodable",
    "WriteError",
    "create_history",
    "encode_line",
    "series_key",
    "split_points",
    "time_ns",
]
