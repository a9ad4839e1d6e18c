"""Read ``site_model.yaml`` into a :class:`SiteModel`, or explain every problem with file and line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from hub.errors import ConfigError, Problem
from hub.site._checks import check_site
from hub.site._model import SiteModel
from hub.yamlsrc import SourceMap, load_yaml

__all__ = ["load_site", "read_site"]


def read_site(path: str | Path) -> tuple[SiteModel, list[Problem]]:
    """Load and check a site model. Returns the model and its warnings; raises :class:`ConfigError` with every
    error (and the warnings) when anything is wrong."""
    data, smap = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError([smap.problem((), "the site model must be a mapping (site:, calendar:, zones: ...)")])
    try:
        model = SiteModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, data, smap)) from None
    found = sorted(check_site(model, smap), key=lambda p: (p.line or 0, p.path))
    if any(p.severity == "error" for p in found):
        raise ConfigError(found)
    return model, found


def load_site(path: str | Path) -> SiteModel:
    """Like :func:`read_site` but drops the warnings (the caller logs them elsewhere or does not care)."""
    return read_site(path)[0]


def _problems(exc: ValidationError, data: Any, smap: SourceMap) -> list[Problem]:
    problems = [smap.problem(_data_path(err["loc"], data), _message(err)) for err in exc.errors()]
    problems.sort(key=lambda p: (p.line or 0, p.path))
    return problems


_ABSENT = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part, _ABSENT)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _ABSENT


def _data_path(loc: Sequence[str | int], data: Any) -> tuple[str | int, ...]:
    """Drop the parts of a pydantic location that are not in the data (union tags such as ``modbus``)."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        child = _child(node, part)
        if child is _ABSENT and i < len(loc) - 1:
            continue  # a tag pydantic adds for a union branch
        node = child
        path.append(part)
    return tuple(path)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: ErrorDetails) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown key (not part of the site model)"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}, got {_shown(value)}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}, got {_shown(value)}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}, got {_shown(value)}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}, got {_shown(value)}"
    if kind in ("enum", "literal_error"):
        return f"must be one of {ctx['expected']}, got {_shown(value)}"
    if kind == "union_tag_invalid":
        return f"protocol must be one of {ctx['expected_tags']}, got {_shown(ctx['tag'])}"
    if kind == "union_tag_not_found":
        return "protocol is missing (bacnet, modbus, mqtt or nut)"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}, got {_shown(value)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be an integer, got {_shown(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {_shown(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, got {_shown(value)}"
    if kind in ("string_type",):
        return f"must be text, got {_shown(value)}"
    if kind in ("list_type", "dict_type", "model_type", "model_attributes_type"):
        want = {"list_type": "a list"}.get(kind, "a mapping")
        return f"must be {want}, got {_shown(value)}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_short":
        return f"must have at least {ctx['min_length']} character(s)"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters, got {_shown(value)}"
    if kind.startswith(("time_", "date_")):
        return f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_shown(value)}"
    return str(err["msg"])
