"""Loading site models: the real one, a small complete one, and a table of broken ones with exact messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hub.cli import main
from hub.errors import ConfigError
from hub.graph import SiteGraph
from hub.site import DeviceKind, read_site
from tests.conftest import FIXTURES, SITE_MODEL

SITE_FIXTURES = FIXTURES / "site"


def test_real_site_model_is_valid_and_complete() -> None:
    model, warnings = read_site(SITE_MODEL)
    assert warnings == []
    counts = SiteGraph(model).counts()
    assert counts["zones"] >= 80
    assert counts["devices"] >= 400
    assert counts["points"] >= 1500
    assert model.site.jma_area.code == 351
    assert model.site.jma_area.name == "東京都多摩東部"
    kinds = {model.device_types[d.type].kind for z in model.zones for d in z.devices}
    assert kinds == set(DeviceKind), f"device kinds without a device: {set(DeviceKind) - kinds}"
    assert {z.security_level for z in model.zones} == {0, 1, 2, 3, 4}
    assert {d.protocol for z in model.zones for d in z.devices} == {"bacnet", "modbus", "mqtt", "nut"}


def test_minimal_fixture_loads() -> None:
    model, warnings = read_site(SITE_FIXTURES / "minimal.yaml")
    assert warnings == []
    assert [z.id for z in model.zones] == ["lobby", "room-201", "machine-room"]
    assert str(model.calendar.close) == "17:15:00"  # unquoted 17:15 is a time, not YAML 1.1's base-60 1035


def _problems(name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        read_site(SITE_FIXTURES / name)
    return [str(p) for p in info.value.problems]


BROKEN = {
    "broken_fields.yaml": [
        "12: calendar.close: must be a local time of day as HH:MM, got '25:00'",
        "24: device_types.vav.points[1].object: must be a BACnet object as type:instance (e.g. analog-input:1), "
        "got 'analog-val:1'",
        "70: device_types.pdu.points[0]: type must be bool for table coil, got uint16",
        "80: zones[0].name: required field is missing",
        "87: zones[0].devices[1]: protocol must be one of 'bacnet', 'modbus', 'mqtt', 'nut', got 'zigbee'",
        "95: zones[1].colour: unknown key (not part of the site model)",
        "107: zones[2].security_level: must be 0-4, got 7",
        "113: zones[2].devices[3].unit_id: must be <= 247, got 300",
    ],
    "broken_refs.yaml": [
        "31: device_types.meter.points[2]: address collides with point 'energy'",
        "83: zones[0].floor: unknown floor 'hall-9f'",
        "86: zones[0].escape_route[0]: 'lobby-sign' is a signage, not a door",
        "91: zones[1].capacity: a bookable zone needs a capacity",
        "96: warning: zones[1].bookable: bookable zone has no occupancy sensor: live availability will be unknown",
        "101: zones[1].devices[1].instance: BACnet instance 1201 already used by device 'room-201-vav'",
        "102: zones[1].devices[2].type: unknown device type 'occupancy-v2'",
        "104: zones[2].id: duplicate zone id 'room-201' (first at zones[1])",
        "109: zones[2].adjacent[0]: a zone cannot be adjacent to itself",
        "111: zones[2].devices[0].type: zone 'room-201' is security level 4 but reader type 'reader' cannot do "
        "biometrics",
        "113: zones[2].devices[2].powered_by: power chain loops: mr-ups → mr-pdu-a → mr-ups",
        "113: zones[2].devices[2].unit_id: Modbus 127.0.4.1:5020 unit 2 already used by device 'lobby-meter'",
        "114: zones[2].devices[3].powered_by[0]: 'mr-meter' is a power-meter, not a power source",
        "115: zones[2].devices[4].powered_by: power chain loops: mr-pdu-b → mr-meter → mr-pdu-b",
    ],
    "broken_syntax.yaml": [
        "4: YAML syntax error: while parsing a flow sequence started at line 3: did not find expected ',' or ']'"
    ],
    "duplicate_key.yaml": ["4: site.id: duplicate key (first defined at line 2)"],
}


@pytest.mark.parametrize(("name", "expected"), BROKEN.items(), ids=list(BROKEN))
def test_broken_site_models_report_every_problem_with_its_line(name: str, expected: list[str]) -> None:
    assert _problems(name) == [f"{SITE_FIXTURES / name}:{e}" for e in expected]


def test_each_broken_line_really_holds_the_fault() -> None:
    """Guard the table above: the reported line of each field error contains the offending text."""
    lines = (SITE_FIXTURES / "broken_fields.yaml").read_text().splitlines()
    for line_no, needle in [(12, "25:00"), (24, "analog-val"), (87, "zigbee"), (95, "colour"),
                            (107, "security_level: 7"), (113, "unit_id: 300")]:  # fmt: skip
        assert needle in lines[line_no - 1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "1: file is empty"),
        (
            "site:\n\t- 1\n",
            "2: YAML syntax error: while scanning for the next token: found character that cannot "
            "start any token (this line has a tab: YAML indents with spaces only)",
        ),
        ("- just\n- a list\n", "1: the site model must be a mapping (site:, calendar:, zones: ...)"),
        (
            "site: {id: Bad Id}\n",
            "1: site.id: must be 1-64 of a-z 0-9 - _ starting with a letter or digit, got 'Bad Id'",
        ),
        (
            "site: !!python/object/apply:os.system [echo]\n",
            "1: site: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' "
            "(only plain data is allowed)",
        ),
        (
            "site: {id: !!binary aGk=}\n",
            "1: site.id: unsupported YAML tag 'tag:yaml.org,2002:binary' (only plain data is allowed)",
        ),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "site_model.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError) as info:
        read_site(f)
    assert f"{f}:{message}" in [str(p) for p in info.value.problems]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        read_site(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("site: {name: Caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_site(bad)


def test_cli_validate_ok_and_broken(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", str(SITE_MODEL)]) == 0
    out = capsys.readouterr().out
    assert "OK:" in out
    assert "zones" in out

    broken = tmp_path / "site_model.yaml"
    shutil.copy(SITE_FIXTURES / "broken_fields.yaml", broken)
    assert main(["validate", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"{broken}:107: zones[2].security_level: must be 0-4, got 7" in out.splitlines()
    assert f"{broken}: 8 error(s); the site model was not loaded" in out


def test_cli_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json", str(SITE_FIXTURES / "broken_refs.yaml")]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    assert len(result["errors"]) == 13
    assert result["warnings"] == [{
        "file": str(SITE_FIXTURES / "broken_refs.yaml"), "line": 96, "path": "zones[1].bookable",
        "message": "bookable zone has no occupancy sensor: live availability will be unknown",
    }]  # fmt: skip
    assert main(["validate", "--json", str(SITE_FIXTURES / "minimal.yaml")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True
    assert result["counts"] == {"buildings": 1, "floors": 2, "zones": 3, "devices": 11, "points": 16}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  close: 17:15\n", "  close: 1035\n", "12: calendar.close: must be a local time of day as HH:MM, got 1035"),
        ("  close: 17:15\n", '  close: "17:15+09:00"\n',
         "12: calendar.close: must be a local time of day as HH:MM, got '17:15+09:00'"),
        ("  days: [mon, tue, wed, thu, fri]\n", "  days: [mon, mon]\n", "10: calendar: days lists a weekday twice"),
        ("  public_holidays: JP\n", "  public_holidays: JP\n  extra_open: [2026-11-29]\n  extra_closed: [2026-11-29]\n",
         "10: calendar: 2026-11-29 in both extra_open and extra_closed"),
        ('address: "127.0.1.1:47808"', 'address: "999.1.1.1:47808"',
         "100: zones[1].devices[0].address: must be IPv4[:port] (e.g. 192.0.2.10:47808), got '999.1.1.1:47808'"),
        ("topic: field/room-201-occ}", 'topic: ""}',
         "101: zones[1].devices[1].topic: must have at least 1 character(s)"),
        ("    kind: door-reader\n    protocol: mqtt\n    capabilities: [card, biometric]\n",
         "    kind: flapper-gate\n    protocol: mqtt\n    capabilities: [card]\n",
         "110: zones[2].devices[0].type: zone 'machine-room' is security level 4 but flapper gate type 'bio-reader' "
         "cannot do biometrics"),
    ],
)  # fmt: skip
def test_more_field_rules(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = (SITE_FIXTURES / "minimal.yaml").read_text(encoding="utf-8")
    assert text.count(old) == 1
    f = tmp_path / "site_model.yaml"
    f.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_site(f)
    assert [str(p) for p in info.value.problems] == [f"{f}:{message}"]
