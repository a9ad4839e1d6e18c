"""``bmhub`` as a user runs it: a real subprocess for ``run``, in-process for ``graph``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cli import main
from hub.graph import SiteGraph
from hub.site import load_site
from tests.conftest import FIXTURES, ROOT, SITE_MODEL

MINIMAL = FIXTURES / "site" / "minimal.yaml"


@contextlib.contextmanager
def hub_process(tmp_path: Path, site: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``bmhub run`` in a subprocess that is killed on the way out, whatever the test did or failed to do."""
    env = {**os.environ, "BMHUB_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "run", str(site)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def read_until(proc: subprocess.Popen[bytes], needle: str, timeout: float = 20) -> str:
    """Output up to and including the first line containing ``needle``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
            if needle.encode() in out:
                return out.decode()
    raise AssertionError(f"{needle!r} not seen; output so far:\n{out.decode(errors='replace')}")


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BMHUB_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "hub", *args], env=env, capture_output=True, text=True, timeout=30,
                          check=False)  # fmt: skip


def test_status_without_a_hub(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "status")
    assert result.returncode == 1
    assert f"no status in {tmp_path / 'state' / 'status.json'}" in result.stderr


def finish(proc: subprocess.Popen[bytes], timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    saved_mode = {"mode": "drill", "since": "2026-11-24T01:00:00+00:00", "reason": "autumn evacuation drill"}
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "mode.json").write_text(json.dumps(saved_mode))
    with hub_process(tmp_path, MINIMAL) as proc:
        started = read_until(proc, "bmhub running")
        assert "restored site mode drill (since 2026-11-24T01:00:00+00:00: autumn evacuation drill)" in started
        assert "site test-site: 1 buildings, 3 zones, 11 devices, 16 points; mode drill" in started
        status = run_cli(tmp_path, "status", "--json")
        assert status.returncode == 0, status.stderr
        live = json.loads(status.stdout)
        assert live["running"] is True
        assert live["mode"]["mode"] == "drill"
        running = {s["name"] for s in live["services"] if s["state"] == "running"}
        assert running == {"staleness", "status", "history", "opening-hours", "mqtt-broker", "mqtt", "bacnet", "api"}
        # The HTTP API of the running hub answers on the address it logged.
        url = re.search(r"HTTP API on (http://127\.0\.0\.1:\d+/)", started)
        assert url, started
        with urllib.request.urlopen(url.group(1) + "api/zones/occupancy?bookable=true", timeout=10) as resp:
            rooms = json.loads(resp.read())
        assert [(r["zone"], r["capacity"], r["quality"]) for r in rooms] == [("room-201", 12, "unknown")]
        with urllib.request.urlopen(url.group(1), timeout=10) as resp:
            assert b"<title>bmhub</title>" in resp.read()
        proc.send_signal(sig)
        out = started + finish(proc, 10)  # a bound for the test, not a timing claim
    assert proc.returncode == 0, out
    assert f"{sig.name} received: stopping" in out
    assert out.rstrip().endswith("bmhub stopped")
    assert "Traceback" not in out
    assert json.loads((tmp_path / "state" / "mode.json").read_text(encoding="utf-8")) == saved_mode
    after = run_cli(tmp_path, "status", "--rejects")
    assert after.returncode == 3
    assert "test-site: hub not running; mode drill" in after.stdout
    assert "message(s) rejected from 0 device(s)" in after.stdout
    assert f"history: embedded store {tmp_path / 'state' / 'history.sqlite3'};" in after.stdout
    # the minimal site's VAV is on 127.0.1.1:47808, where nothing answers in this test (or a demo might)
    assert re.search(r"bacnet: 127\.0\.0\.1:\d+, devices 1 (unreachable|ok|unknown)", after.stdout), after.stdout
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_run_refuses_a_broken_site_model(tmp_path: Path) -> None:
    with hub_process(tmp_path, FIXTURES / "site" / "broken_fields.yaml") as proc:
        out = finish(proc, 20)
    assert proc.returncode == 1
    assert "broken_fields.yaml:107: zones[2].security_level: must be 0-4, got 7" in out


def test_graph_json_filters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(MINIMAL), "--json", "--level", "4", "--points"]) == 0
    tree = json.loads(capsys.readouterr().out)
    zones = [z for b in tree["buildings"] for f in b["floors"] for z in f["zones"]]
    assert [z["id"] for z in zones] == ["machine-room"]
    reader = next(d for d in zones[0]["devices"] if d["id"] == "mr-reader")
    assert reader["points"] == [{"id": "mr-reader.door", "kind": "door", "unit": None, "writable": False}]

    assert main(["graph", str(MINIMAL), "--json", "--kind", "signage", "--kind", "door"]) == 0
    tree = json.loads(capsys.readouterr().out)
    devices = [d["id"] for b in tree["buildings"] for f in b["floors"] for z in f["zones"] for d in z["devices"]]
    assert devices == ["lobby-exit", "lobby-sign"]


def test_graph_on_the_real_site_by_building_and_kind(capsys: pytest.CaptureFixture[str]) -> None:
    graph = SiteGraph(load_site(SITE_MODEL))
    building = next(iter(graph.buildings))
    assert main(["graph", str(SITE_MODEL), "--json", "--building", building, "--kind", "signage"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert [b["id"] for b in tree["buildings"]] == [building]
    shown = sorted(d["id"] for b in tree["buildings"] for f in b["floors"] for z in f["zones"] for d in z["devices"])
    assert shown == sorted(d.id for d in graph.find_devices(kind="signage", building=building))
    assert shown


def test_graph_tree_text_and_unknown_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(MINIMAL), "--floor", "hall-2f"]) == 0
    text = capsys.readouterr().out
    assert "Meeting room 201 (room-201)" in text
    assert "mr-ups" in text
    assert "Lobby" not in text
    assert main(["graph", str(MINIMAL), "--building", "nowhere"]) == 2
    assert "unknown building 'nowhere'; known: hall" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "bmhub"
    result = subprocess.run([str(exe), "validate", str(MINIMAL)], capture_output=True, text=True, cwd=ROOT,
                            timeout=30, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 1 buildings, 2 floors, 3 zones, 11 devices, 16 points" in result.stdout


def test_graph_text_shows_units_and_names_literally(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Units like [degC] and names with brackets must not be swallowed as console markup."""
    site = tmp_path / "site.yaml"
    site.write_text(MINIMAL.read_text(encoding="utf-8").replace("name: Lobby", "name: Lobby [main]"), encoding="utf-8")
    assert main(["graph", str(site), "--points"]) == 0
    text = capsys.readouterr().out
    assert "room-201-vav.zone_temp temperature [degC]" in text
    assert "lobby-meter.power power [kW]" in text
    assert "Lobby [main] (lobby)" in text
