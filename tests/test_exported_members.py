"""Each package's public names are exactly its ``__all__`` and all import (httpx ``test_exported_members``)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["hub", "hub.site", "hub.bus", "hub.events", "hub.errors", "automations"])
def test_all_names_resolve(module: str) -> None:
    mod = importlib.import_module(module)
    exported = set(mod.__all__)
    assert exported, f"{module} exports nothing"
    missing = [name for name in exported if not hasattr(mod, name)]
    assert missing == []
    public = {n for n in vars(mod) if not n.startswith("_") and not isinstance(vars(mod)[n], type(importlib))}
    assert exported >= {n for n in public if getattr(vars(mod)[n], "__module__", "").startswith(module)}


def test_core_imports_no_protocol_library() -> None:
    import sys

    for name in [m for m in sys.modules if m.startswith(("aiomqtt", "bacpypes3", "pymodbus"))]:
        del sys.modules[name]
    importlib.import_module("hub.runtime")
    importlib.import_module("hub.cli")
    assert not [m for m in sys.modules if m.startswith(("aiomqtt", "bacpypes3", "pymodbus"))]
