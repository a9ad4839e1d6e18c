"""Every example in docs/site-model.md is valid, and every device kind has one.

``yaml`` blocks are checked by their top-level keys:

- ``device_types`` + ``devices``: the types are added to tests/fixtures/site/minimal.yaml and the devices
  appended to its level-4 ``machine-room`` or its level-2 ``room-201`` (see :func:`_target_zone`); the result
  must load with no error and no warning. Under "## Examples by device kind" the block's ``### `kind` ``
  heading must be the kind of every device in it, and every device kind must have such a block.
- all five sections: a complete model, loaded as it is.
- only ``site``, ``calendar`` or ``buildings``: substituted into the minimal model (``buildings`` appended).
- anything else is an excerpt: its lines must be lines of the real site_model.yaml, in the same order (the
  real file is checked by tests/site/test_load.py).

``console`` blocks are run (``$ bmhub ...``) and their output compared.

YAML is read with :func:`hub.yamlsrc.load_yaml`, as the hub reads it: ``yaml.safe_load`` turns minimal.yaml's
unquoted ``close: 17:15`` into the base-60 integer 1035 and silently keeps the last of two duplicate keys.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.cli import main
from hub.errors import ConfigError
from hub.site import DeviceKind, SiteModel, read_site
from hub.yamlsrc import load_yaml
from tests.conftest import FIXTURES, ROOT, SITE_MODEL

DOC = ROOT / "docs" / "site-model.md"
MINIMAL = FIXTURES / "site" / "minimal.yaml"
KIND_SECTION = "Examples by device kind"
SECTIONS = frozenset({"site", "calendar", "device_types", "buildings", "zones"})
FRAGMENT_KEYS = frozenset({"site", "calendar", "buildings"})


@dataclass(frozen=True)
class Block:
    line: int  # line of the opening fence in the doc
    lang: str
    text: str
    section: str  # the ## heading above it
    heading: str  # the ### heading above it within that section, or ""

    @property
    def keys(self) -> frozenset[str]:
        """Top-level mapping keys, read from the text so that collection never fails on a broken block."""
        return frozenset(re.findall(r"^([A-Za-z_][\w-]*):", self.text, flags=re.MULTILINE))

    @property
    def where(self) -> str:
        return f"docs/site-model.md:{self.line}"


def _blocks() -> list[Block]:
    blocks: list[Block] = []
    section = heading = ""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.fullmatch(r"```(\w*)\s*", line):
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(start + 1, m.group(1), "\n".join(body) + "\n", section, heading))
        elif line.startswith("## "):
            section, heading = line[3:].strip(), ""
        elif line.startswith("### "):
            heading = line[4:].strip()
        i += 1
    return blocks


BLOCKS = _blocks()
YAML_BLOCKS = [b for b in BLOCKS if b.lang == "yaml"]
DEVICE_BLOCKS = [b for b in YAML_BLOCKS if {"device_types", "devices"} <= b.keys]
KIND_BLOCKS = [b for b in DEVICE_BLOCKS if b.section == KIND_SECTION]
COMPLETE_BLOCKS = [b for b in YAML_BLOCKS if b.keys == SECTIONS]
FRAGMENT_BLOCKS = [b for b in YAML_BLOCKS if b.keys and b.keys <= FRAGMENT_KEYS]
EXCERPT_BLOCKS = [b for b in YAML_BLOCKS if b not in DEVICE_BLOCKS + COMPLETE_BLOCKS + FRAGMENT_BLOCKS]
CONSOLE_BLOCKS = [b for b in BLOCKS if b.lang == "console"]


def _ids(blocks: list[Block]) -> list[str]:
    return [f"line{b.line}" + (f"-{b.heading.strip('`')}" if b.section == KIND_SECTION else "") for b in blocks]


def _read_yaml(path: Path, text: str) -> Any:
    path.write_text(text, encoding="utf-8")
    return load_yaml(path)[0]


def _minimal() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(MINIMAL)[0]
    return data


def _load(tmp_path: Path, block: Block, data: dict[str, Any]) -> SiteModel:
    path = tmp_path / "site_model.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    try:
        model, warnings = read_site(path)
    except ConfigError as exc:
        problems = "\n".join(str(p) for p in exc.problems)
        pytest.fail(f"the example at {block.where} does not load:\n{problems}\n--- as loaded:\n{path.read_text()}")
    assert warnings == [], f"the example at {block.where} loads with warnings: {[str(w) for w in warnings]}"
    return model


def _claimed_kind(block: Block) -> DeviceKind:
    m = re.fullmatch(r"`([a-z-]+)`", block.heading)
    kinds = [k.value for k in DeviceKind]
    assert m is not None, f"{block.where}: heading {block.heading!r} must be a device kind in backticks"
    assert m.group(1) in kinds, f"{block.where}: {m.group(1)!r} is not a device kind ({', '.join(kinds)})"
    return DeviceKind(m.group(1))


def _add_example(model: dict[str, Any], example: dict[str, Any]) -> None:
    """Add the example's types and devices to the minimal model, keeping the example exactly as written."""
    types: dict[str, Any] = example["device_types"]
    devices: list[Any] = example["devices"]
    assert isinstance(types, dict), "device_types must be a mapping"
    assert isinstance(devices, list), "devices must be a list"
    for name in set(types) & set(model["device_types"]):  # e.g. both have `ups`: rename the fixture's
        model["device_types"][f"fixture-{name}"] = model["device_types"].pop(name)
        for zone in model["zones"]:
            for dev in zone.get("devices", []):
                if dev["type"] == name:
                    dev["type"] = f"fixture-{name}"
    model["device_types"].update(types)
    zone = next(z for z in model["zones"] if z["id"] == _target_zone(types, devices))
    zone.setdefault("devices", []).extend(devices)


@functools.cache
def _real_levels() -> dict[str, int]:
    """Security level of the zone of every device of the real site, by device id."""
    zones = load_yaml(SITE_MODEL)[0]["zones"]
    return {d["id"]: z["security_level"] for z in zones for d in z.get("devices", [])}


def _target_zone(types: dict[str, Any], devices: list[Any]) -> str:
    """The fixture zone for an example: level-4 ``machine-room`` or level-2 ``room-201``.

    A device quoted from the real site goes where the real site has it (a level-4 zone or not), so an example
    reader from a level-4 room must keep its biometric capability. Others go to the machine room, except
    card-only readers, which a level-4 zone refuses.
    """
    real = _real_levels()
    levels = [real[d["id"]] for d in devices if d.get("id") in real]
    if levels:
        return "machine-room" if 4 in levels else "room-201"
    card_only = any(
        t.get("kind") == "door-reader" and "biometric" not in t.get("capabilities", []) for t in types.values()
    )
    return "room-201" if card_only else "machine-room"


@pytest.mark.parametrize("block", DEVICE_BLOCKS, ids=_ids(DEVICE_BLOCKS))
def test_device_example_is_valid(tmp_path: Path, block: Block) -> None:
    assert block.keys == {"device_types", "devices"}, f"{block.where}: only device_types: and devices: allowed"
    example = _read_yaml(tmp_path / "example.yaml", block.text)
    data = _minimal()
    _add_example(data, example)
    model = _load(tmp_path, block, data)
    kinds = {d.id: model.device_types[d.type].kind for z in model.zones for d in z.devices}
    ids = [d["id"] for d in example["devices"]]
    assert ids, f"{block.where}: no device"
    if block.section == KIND_SECTION:
        claimed = _claimed_kind(block)
        assert {i: kinds[i] for i in ids} == dict.fromkeys(ids, claimed), f"{block.where}: not all {claimed.value}"


def test_every_device_kind_has_an_example() -> None:
    covered = {_claimed_kind(b) for b in KIND_BLOCKS}
    missing = sorted(k.value for k in set(DeviceKind) - covered)
    assert not missing, f"docs/site-model.md has no example under '## {KIND_SECTION}' for: {', '.join(missing)}"


def test_kind_section_holds_only_device_examples() -> None:
    stray = [b.where for b in YAML_BLOCKS if b.section == KIND_SECTION and b not in KIND_BLOCKS]
    assert not stray, f"yaml blocks under '## {KIND_SECTION}' without device_types: and devices: at {stray}"


@pytest.mark.parametrize("block", COMPLETE_BLOCKS, ids=_ids(COMPLETE_BLOCKS))
def test_complete_example_is_valid(tmp_path: Path, block: Block) -> None:
    _load(tmp_path, block, _read_yaml(tmp_path / "example.yaml", block.text))


@pytest.mark.parametrize("block", FRAGMENT_BLOCKS, ids=_ids(FRAGMENT_BLOCKS))
def test_fragment_example_is_valid_in_the_minimal_model(tmp_path: Path, block: Block) -> None:
    fragment = _read_yaml(tmp_path / "example.yaml", block.text)
    data = _minimal()
    for key in ("site", "calendar"):
        if key in fragment:
            data[key] = fragment[key]
    data["buildings"].extend(fragment.get("buildings", []))
    _load(tmp_path, block, data)


def test_doc_has_a_validated_calendar_and_complete_example() -> None:
    assert any("calendar" in b.keys for b in FRAGMENT_BLOCKS), "no calendar: example is checked"
    assert COMPLETE_BLOCKS, "no complete site model example is checked"


@pytest.mark.parametrize("block", EXCERPT_BLOCKS, ids=_ids(EXCERPT_BLOCKS))
def test_excerpt_is_quoted_from_the_real_site_model(tmp_path: Path, block: Block) -> None:
    _read_yaml(tmp_path / "excerpt.yaml", block.text)  # parses, no duplicate keys
    real = iter(line.rstrip() for line in SITE_MODEL.read_text(encoding="utf-8").splitlines())
    quoted = [ln.rstrip() for ln in block.text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    # Lines may be left out, but those quoted must appear in site_model.yaml in the same order.
    missing = next((ln for ln in quoted if ln not in real), None)  # `in` advances the iterator
    hint = "quote site_model.yaml exactly and in order, or make the block a checked example"
    assert missing is None, f"{block.where}: not in site_model.yaml after the lines before it ({hint}):\n{missing}"


def _commands(block: Block) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            assert pairs, f"{block.where}: output before the first '$ ' command"
            pairs[-1][1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in pairs]


@pytest.mark.parametrize("block", CONSOLE_BLOCKS, ids=_ids(CONSOLE_BLOCKS))
def test_console_example_prints_what_the_doc_shows(
    block: Block, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps trees at the terminal width
    monkeypatch.delenv("BMHUB_SITE_MODEL", raising=False)
    for command, expected in _commands(block):
        argv = shlex.split(command)
        assert argv[0] == "bmhub", f"{block.where}: only bmhub commands are run"
        capsys.readouterr()
        main(argv[1:])
        out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
        assert out.rstrip("\n") == expected.rstrip("\n"), f"{block.where}: output of {command!r} differs"


def test_every_point_kind_is_listed_in_the_reference() -> None:
    from hub.site import PointKind

    section = DOC.read_text(encoding="utf-8").split("### Point kinds", 1)[1].split("###", 1)[0]
    listed = set(re.findall(r"`([a-z0-9-]+)`", section))
    assert {k.value for k in PointKind} <= listed
