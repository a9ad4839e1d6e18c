"""YAML loading that remembers where every value came from.

Site models and user automations are written by people; when one is wrong, the message must name the file
and line. :func:`load_yaml` returns the plain data together with a :class:`SourceMap` from data paths
(``("zones", 17, "security_level")``) to 1-based line numbers. Duplicate keys, which plain YAML loaders
silently resolve to the last one, are reported as problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hub.errors import ConfigError, Problem

__all__ = ["SourceMap", "format_path", "load_yaml"]

PathKey = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Where each value of a loaded YAML document starts (1-based lines)."""

    file: str
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def problem(self, path: Sequence[str | int], message: str, *, warning: bool = False) -> Problem:
        return Problem(
            file=self.file,
            line=self.line(path),
            path=format_path(path),
            message=message,
            severity="warning" if warning else "error",
        )


def format_path(path: Sequence[str | int]) -> str:
    """``("zones", 17, "security_level")`` → ``zones[17].security_level``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_SAFE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")}


def _construct(node: yaml.Node, path: PathKey, smap: SourceMap, problems: list[Problem]) -> Any:
    smap.lines.setdefault(path, node.start_mark.line + 1)
    if node.tag not in _SAFE_TAGS:
        problems.append(smap.problem(path, f"unsupported YAML tag {node.tag!r} (only plain data is allowed)"))
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str | int):
                problems.append(smap.problem(path, f"keys must be strings, got {key!r}"))
                continue
            child = (*path, key)
            if key in result:
                first = smap.lines.get(child)
                problems.append(
                    Problem(
                        smap.file,
                        key_node.start_mark.line + 1,
                        format_path(child),
                        f"duplicate key (first defined at line {first})",
                    )
                )
                continue
            smap.lines[child] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, child, smap, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), smap, problems) for i, item in enumerate(node.value)]
    return _scalar(node)


_resolver_loader = yaml.SafeLoader("")
# libyaml composes about 5x faster than pure Python (the real site: ~80 ms instead of ~420 ms) and keeps marks.
_COMPOSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return None
    # YAML 1.1 reads 17:15 as the base-60 integer 1035; in a building's config it is always a time of day.
    if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in node.value:
        return node.value
    return _resolver_loader.construct_object(node, deep=True)


def load_yaml(path: str | Path, *, display_name: str | None = None) -> tuple[Any, SourceMap]:
    """Parse one YAML document. Raises :class:`ConfigError` naming file and line on any problem.

    Anchors and aliases are allowed (they expand before validation); tags that build Python objects are not,
    because only the safe schema is used.
    """
    p = Path(path)
    name = display_name or str(path)
    smap = SourceMap(name)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(name, None, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(name, None, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from exc
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = exc.problem or "invalid YAML"
        if exc.context:
            ctx_mark = exc.context_mark
            started = f" started at line {ctx_mark.line + 1}" if ctx_mark and ctx_mark.line + 1 != line else ""
            msg = f"{exc.context}{started}: {msg}"
        lines = text.splitlines()
        if line is not None and 0 < line <= len(lines) and "\t" in lines[line - 1]:
            msg += " (this line has a tab: YAML indents with spaces only)"
        raise ConfigError([Problem(name, line, "", f"YAML syntax error: {msg}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, None, "", f"YAML error: {exc}")]) from exc
    if node is None:
        raise ConfigError([Problem(name, 1, "", "file is empty")])
    problems: list[Problem] = []
    data = _construct(node, (), smap, problems)
    if problems:
        raise ConfigError(problems)
    return data, smap
