"""bmhub core: site model, building graph, event bus, state, runtime. Imports no protocol library."""

from hub.bus import Bus, Overflow, SubscriberStats
from hub.errors import (
    AdapterAuthError,
    AdapterError,
    AdapterNotReady,
    AutomationError,
    CommandRejected,
    ConfigError,
    DeviceError,
    HubError,
    Problem,
)
from hub.events import (
    AccessDecision,
    Alarm,
    Alert,
    Command,
    CommandResult,
    Context,
    Event,
    Mode,
    ModeChanged,
    PointState,
    Quality,
    Reading,
    StateChanged,
)
from hub.graph import SiteGraph
from hub.site import SiteModel, load_site, read_site
from hub.state import StateStore

__version__ = "0.1.0"

__all__ = [
    "AccessDecision",
    "AdapterAuthError",
    "AdapterError",
    "AdapterNotReady",
    "Alarm",
    "Alert",
    "AutomationError",
    "Bus",
    "Command",
    "CommandRejected",
    "CommandResult",
    "ConfigError",
    "Context",
    "DeviceError",
    "Event",
    "HubError",
    "Mode",
    "ModeChanged",
    "Overflow",
    "PointState",
    "Problem",
    "Quality",
    "Reading",
    "SiteGraph",
    "SiteModel",
    "StateChanged",
    "StateStore",
    "SubscriberStats",
    "__version__",
    "load_site",
    "read_site",
]
