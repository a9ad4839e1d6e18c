"""The HTTP API, run through its lifespan (``with TestClient(app)``) over a real runtime's state."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from hub.api import create_app
from hub.events import PointState, Quality, StateChanged, utcnow
from hub.runtime import Runtime
from hub.settings import Settings
from hub.site import load_site
from tests.conftest import FIXTURES


def runtime(tmp_path: Path) -> Runtime:
    return Runtime(load_site(FIXTURES / "site" / "minimal.yaml"), Settings(state_dir=tmp_path, api=False), adapters=())


def report(rt: Runtime, point: str, value: object, quality: Quality = Quality.GOOD) -> None:
    new = PointState(point=point, value=value, quality=quality, time=utcnow())  # type: ignore[arg-type]
    rt.occupancy.apply(StateChanged(point=point, old=None, new=new))


def test_zone_occupancy_for_the_booking_app(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    with TestClient(create_app(rt)) as client:
        unknown = client.get("/api/zones/occupancy", params={"bookable": "true"}).json()
        assert unknown == [{
            "zone": "room-201", "name": "Meeting room 201", "building": "hall", "floor": "hall-2f", "bookable": True,
            "capacity": 12, "occupied": None, "count": None, "since": None, "quality": "unknown",
        }]  # fmt: skip
        report(rt, "room-201-occ.occupied", True)
        report(rt, "room-201-occ.count", 5)
        room = client.get("/api/zones/room-201/occupancy").json()
        assert (room["occupied"], room["count"], room["quality"]) == (True, 5, "good")
        report(rt, "room-201-occ.count", 0, Quality.OFFLINE)
        room = client.get("/api/zones/room-201/occupancy").json()
        assert room["quality"] == "offline"  # never offer a room on a guess


def test_unknown_zone_and_zone_without_sensor_are_404_with_a_reason(tmp_path: Path) -> None:
    with TestClient(create_app(runtime(tmp_path))) as client:
        r = client.get("/api/zones/nowhere/occupancy")
        assert (r.status_code, r.json()) == (404, {"detail": "unknown zone 'nowhere'"})
        r = client.get("/api/zones/lobby/occupancy")
        assert (r.status_code, r.json()) == (404, {"detail": "zone 'lobby' has no occupancy sensor"})
        r = client.get("/api/zones/occupancy", params={"bookable": "perhaps"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["query", "bookable"]


def test_status_page_and_openapi(tmp_path: Path) -> None:
    with TestClient(create_app(runtime(tmp_path))) as client:
        status = client.get("/api/status").json()
        assert status["site"] == "test-site"
        assert status["mode"]["mode"] in ("normal", "after-hours")
        assert "<title>bmhub</title>" in client.get("/").text
        spec = client.get("/openapi.json").json()
        assert {"/api/zones/occupancy", "/api/zones/{zone}/occupancy", "/api/status"} <= set(spec["paths"])
