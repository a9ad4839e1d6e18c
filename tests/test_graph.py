"""Building-graph queries: exact answers on the small fixture, and on the real site checked against a
brute-force walk of the model (so the indexes cannot drift from the data)."""

from __future__ import annotations

import pytest

from hub.graph import SiteGraph
from hub.site import DOOR_KINDS, BuildingKind, DeviceKind, PointKind, load_site
from tests.conftest import FIXTURES, SITE_MODEL


@pytest.fixture(scope="module")
def small() -> SiteGraph:
    return SiteGraph(load_site(FIXTURES / "site" / "minimal.yaml"))


@pytest.fixture(scope="module")
def real() -> SiteGraph:
    return SiteGraph(load_site(SITE_MODEL))


def ids(items: list[object]) -> list[str]:
    return [i.id for i in items]  # type: ignore[attr-defined]


def test_containment_and_adjacency(small: SiteGraph) -> None:
    assert ids(small.zones_on("hall-2f")) == ["room-201", "machine-room"]
    assert ids(small.zones_in("hall")) == ["lobby", "room-201", "machine-room"]
    dev = small.devices["mr-ups"]
    assert (dev.building, dev.floor, dev.zone, dev.kind) == ("hall", "hall-2f", "machine-room", DeviceKind.UPS)
    assert small.adjacent("lobby") == {"room-201"}  # declared only on room-201's side: symmetric
    assert small.adjacent("room-201") == {"lobby", "machine-room"}
    assert small.points["room-201-vav.setpoint"].writable


def test_escape_routes(small: SiteGraph) -> None:
    assert ids(small.escape_doors("room-201")) == ["lobby-exit"]
    assert ids(small.escape_doors("machine-room")) == []
    assert ids(small.escape_route_doors()) == ["lobby-exit"]


def test_occupancy_points_of_bookable_rooms(small: SiteGraph) -> None:
    found = small.find_points(kind=[PointKind.OCCUPANCY, PointKind.PEOPLE_COUNT], bookable=True)
    assert ids(found) == ["room-201-occ.occupied", "room-201-occ.count"]


def test_power_loss_respects_dual_feeds(small: SiteGraph) -> None:
    # mr-meter is fed by pdu-a (on the UPS) and pdu-b (mains): losing the UPS does not take it down.
    assert ids(small.power_loss("mr-ups")) == ["lobby-sign", "room-201-reader", "mr-reader", "mr-pdu-a"]
    assert ids(small.power_loss(["mr-ups", "mr-pdu-b"])) == [
        "lobby-sign", "room-201-reader", "mr-reader", "mr-pdu-a", "mr-meter",
    ]  # fmt: skip
    assert small.feeds("mr-ups") == ["lobby-sign", "room-201-reader", "mr-reader", "mr-pdu-a"]


def test_real_signage_by_building(real: SiteGraph) -> None:
    for b in real.buildings:
        expected = [
            d.id for z in real.model.zones for d in z.devices
            if real.model.device_types[d.type].kind == DeviceKind.SIGNAGE and real.zones[z.id].building == b
        ]  # fmt: skip
        assert ids(real.find_devices(kind=DeviceKind.SIGNAGE, building=b)) == expected
    assert real.find_devices(kind=DeviceKind.SIGNAGE, building="city-hall"), "the city hall has signage"


def test_real_every_zone_with_people_has_an_escape_route(real: SiteGraph) -> None:
    for z in real.zones.values():
        building = real.buildings[z.building]
        if building.kind is BuildingKind.GROUNDS:
            continue  # the grounds are already outside
        doors = real.escape_doors(z.id)
        assert doors, f"zone {z.id} has no escape route"
        assert all(d.kind in DOOR_KINDS for d in doors)


def test_real_bookable_rooms_have_occupancy_and_capacity(real: SiteGraph) -> None:
    bookable = real.find_zones(bookable=True)
    assert len(bookable) >= 10
    with_occupancy = {p.zone for p in real.find_points(kind=PointKind.OCCUPANCY, bookable=True)}
    assert with_occupancy == {z.id for z in bookable}
    assert all(z.spec.capacity for z in bookable)


def test_real_level4_readers_do_biometrics(real: SiteGraph) -> None:
    level4 = real.find_zones(level=4)
    assert level4
    readers = [d for z in level4 for d in real.find_devices(kind=DeviceKind.DOOR_READER, zone=z.id)]
    assert readers
    assert all("biometric" in d.capabilities for d in readers)


def test_real_data_centre_survives_losing_one_ups(real: SiteGraph) -> None:
    upses = [d for d in real.find_devices(kind=DeviceKind.UPS) if real.buildings[d.building].kind == "data-centre"]
    assert len(upses) >= 2
    one = {d.id for d in real.power_loss(upses[0].id)}
    # The UPS's own PDUs (and anything fed only from it) go down; dual-fed racks and cooling stay up.
    assert any(real.devices[d].kind is DeviceKind.PDU for d in one)
    assert all(set(real.fed_by(d)) <= one | {upses[0].id} for d in one)
    assert not any(real.devices[d].kind in (DeviceKind.COOLING, DeviceKind.ENV_SENSOR) for d in one)
    both = {d.id for d in real.power_loss([u.id for u in upses])}
    assert both > one
    assert any(real.devices[d].kind is DeviceKind.COOLING for d in both)


def test_kind_filters_accept_plain_strings(real: SiteGraph) -> None:
    assert ids(real.find_devices(kind="ups"))
    assert ids(real.find_devices(kind="ups")) == ids(real.find_devices(kind=DeviceKind.UPS))
    assert ids(real.find_points(kind="occupancy")) == ids(real.find_points(kind=PointKind.OCCUPANCY))


def test_real_indexes_match_a_brute_force_walk(real: SiteGraph) -> None:
    for kind in DeviceKind:
        brute = [d.id for z in real.model.zones for d in z.devices if real.model.device_types[d.type].kind == kind]
        assert ids(real.find_devices(kind=kind)) == brute
    n_points = sum(len(real.model.device_types[d.type].points) for z in real.model.zones for d in z.devices)
    assert len(real.points) == n_points
