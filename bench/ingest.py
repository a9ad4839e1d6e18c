"""Ingest benchmark: MQTT readings from a publisher process → `bmhub run` → InfluxDB, all on loopback.

Run on demand (results go to stdout; record them in docs/performance.md):

    .venv/bin/python bench/ingest.py                  # defaults: 1,000 sensors, paced 1k and 2k/s, then flat out
    .venv/bin/python bench/ingest.py --seconds 3 --max-count 10000 --outage-count 10000   # a quicker run

It starts and stops everything it uses, each on a free loopback port (never the machine's own Mosquitto on 1883):
a Mosquitto and an influxd of its own (Debian's mosquitto and influxdb, through tests/servers.py), a `bmhub run`
process on a generated site of N MQTT temperature sensors (one reading per message), and a publisher process
(paho-mqtt, QoS 1, so the broker loses nothing and any loss is the hub's). Every value changes, so each reading
also makes a state change: the hub writes two points per message (``reading`` and ``state_change``) and
publishes the new state on MQTT; ``--steady`` repeats each sensor's value instead (readings only).

Phases:
1. paced: the publisher holds each ``--rates`` rate for ``--seconds``; reported: the rate it reached, the rate
   readings reached InfluxDB end to end, the lag of the last one, loss, the hub's CPU and memory.
2. flat out: ``--max-count`` messages as fast as the publisher goes.
3. outage: influxd killed (SIGKILL), ``--outage-count`` messages published (the hub spools them), influxd
   started again: the spool's replay rate, and loss over the whole run (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import Influx, Mosquitto  # noqa: E402 - after the path above

TICK = os.sysconf("SC_CLK_TCK")


def site_yaml(devices: int) -> str:
    lines = [
        "site: {id: bench, name: Ingest bench, timezone: Asia/Tokyo, city_code: '1321000',",
        "       jma_area: {name: bench, code: 351}, languages: [ja]}",
        "calendar: {open: '08:30', close: '17:15', days: [mon, tue, wed, thu, fri], public_holidays: JP}",
        "device_types:",
        "  sensor:",
        "    kind: env-sensor",
        "    protocol: mqtt",
        "    points:",
        "      - {id: temp, kind: temperature, unit: degC, topic: ''}",
        "buildings:",
        "  - {id: b, name: B, floors: [{id: b-1f, name: 1F, level: 1}]}",
        "zones:",
        "  - id: z",
        "    name: Z",
        "    floor: b-1f",
        "    use: office",
        "    security_level: 1",
        "    devices:",
    ]
    lines += [f"      - {{id: s{i}, type: sensor, protocol: mqtt, topic: bench/s{i}}}" for i in range(devices)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- the publisher process
def publisher(port: int, devices: int, count: int, rate: float, start: int, qos: int, steady: bool) -> None:
    """Publish ``count`` readings round-robin over the sensors, ``rate``/s (0: flat out); print JSON."""
    import paho.mqtt.client as mqtt  # noqa: TID251 - the publisher plays field devices, as tests do

    acked = 0

    def on_publish(client: object, userdata: object, mid: int, rc: object, props: object) -> None:
        nonlocal acked
        acked += 1

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.on_publish = on_publish
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.perf_counter()
    for i in range(count):
        n = start + i  # every message changes its sensor's value (a reading and a state change), unless steady
        value = "21.50" if steady else f"{20 + n // devices % 1000 / 100:.2f}"
        client.publish(f"bench/s{n % devices}", value, qos=qos)
        if rate and i % 100 == 99:
            ahead = t0 + (i + 1) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    sent = time.perf_counter() - t0
    while acked < count:
        time.sleep(0.001)
    acked_at = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"count": count, "send_seconds": sent, "ack_seconds": acked_at}))


# ---------------------------------------------------------------------- history alone, in this process
async def history_alone(bench: Bench, n: int) -> None:
    """Readings put straight on a bus → hub.history → InfluxDB (its own database): the writer's own limit."""
    from hub.bus import Bus
    from hub.events import Reading
    from hub.graph import SiteGraph
    from hub.history import HistorySettings, InfluxHistory, InfluxSettings, InfluxV1
    from hub.site import load_site

    bench.influx.query('CREATE DATABASE "alone"', method="POST")
    graph = SiteGraph(load_site(bench.work / "site.yaml"))
    points = sorted(graph.points)
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    events = [Reading(point=points[i % len(points)], value=i / 10, time=t0 + timedelta(microseconds=i))
              for i in range(n)]  # fmt: skip
    async with Bus() as bus:
        backend = InfluxV1(InfluxSettings(url=bench.influx.url, database="alone"))
        svc = InfluxHistory(bus, graph, backend, HistorySettings(), bench.work / "alone-spool")
        ready = asyncio.Event()
        task = asyncio.create_task(svc.run(ready.set), name="history")
        await ready.wait()
        cpu0, t = time.process_time(), time.perf_counter()
        for i in range(0, n, 10_000):  # as adapters do: bursts, the loop free in between
            for ev in events[i : i + 10_000]:
                bus.publish(ev)
            await asyncio.sleep(0)
        deadline = time.monotonic() + 120
        # Bursts beyond BMHUB_HISTORY_MAX_PENDING go through the spool (memory stays bounded): count both paths.
        while svc.written + svc.replayed < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"history alone: only {svc.written + svc.replayed} of {n} written: {svc.details()}")
            await asyncio.sleep(0.005)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    alone = bench.influx.query("SELECT count(value) FROM reading", database="alone")
    count = alone[0]["values"][0][1] if alone else 0
    print(f"{'alone':>12}: {n:,} readings on the bus → InfluxDB: {n / wall:,.0f} points/s, {cpu / wall * 100:.0f}% of "
          f"a core ({cpu / n * 1e6:.1f} µs CPU per point, HTTP and JSON included); {count:,} in InfluxDB, "
          f"{svc.writes} writes, {svc.replayed:,} points by way of the spool", flush=True)  # fmt: skip


# ---------------------------------------------------------------------- the bench
@dataclass
class Usage:
    cpu: float  # seconds of CPU
    rss: int  # kB now
    hwm: int  # kB peak


def usage(pid: int) -> Usage:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return Usage((int(stat[11]) + int(stat[12])) / TICK, int(status["VmRSS"].split()[0]),
                 int(status["VmHWM"].split()[0]))  # fmt: skip


class Bench:
    def __init__(self, work: Path, devices: int, qos: int = 1, steady: bool = False) -> None:
        self.work = work
        self.devices = devices
        self.qos = qos
        self.steady = steady
        self.per_reading = 1 if steady else 2  # points per reading: the reading, and its state change
        self.mosquitto = Mosquitto(work / "mosquitto")
        self.influx = Influx(work / "influxdb")
        self.state = work / "state"
        self.hub: subprocess.Popen[bytes] | None = None
        self.published = 0

    def start(self) -> None:
        self.mosquitto.start()
        self.influx.start()
        site = self.work / "site.yaml"
        site.write_text(site_yaml(self.devices))
        env = {**os.environ, "BMHUB_STATE_DIR": str(self.state), "BMHUB_API": "false", "PYTHONUNBUFFERED": "1",
               "BMHUB_MQTT_HOST": "127.0.0.1", "BMHUB_MQTT_PORT": str(self.mosquitto.port),
               "BMHUB_INFLUX_URL": self.influx.url, "BMHUB_STATUS_INTERVAL": "0.2", "BMHUB_LOG_LEVEL": "WARNING",
               "BMHUB_HISTORY_RETRY_MAX": "1"}  # fmt: skip
        self.hub = subprocess.Popen([sys.executable, "-m", "hub", "run", str(site)], env=env, cwd=self.work,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = self.status()
            services = status.get("services", [])
            if status.get("running") and any(s["name"] == "mqtt" and s["state"] == "running" for s in services):
                return
            time.sleep(0.1)
        raise SystemExit(f"the hub did not start:\n{self.hub_output()}")

    def hub_output(self) -> str:
        assert self.hub is not None
        assert self.hub.stdout is not None
        out = b""
        while select.select([self.hub.stdout], [], [], 0)[0]:
            chunk = os.read(self.hub.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
        return out.decode(errors="replace")

    def stop(self) -> None:
        if self.hub is not None and self.hub.poll() is None:
            self.hub.send_signal(signal.SIGTERM)
            try:
                self.hub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.hub.kill()
                self.hub.wait()
        self.influx.stop()
        self.mosquitto.stop()

    def status(self) -> dict[str, object]:
        try:
            return dict(json.loads((self.state / "status.json").read_text()))
        except (OSError, ValueError):
            return {}

    def history(self) -> dict[str, int]:
        details = self.status().get("details", {})
        return dict(details.get("history", {})) if isinstance(details, dict) else {}

    def in_db(self) -> int:
        rows = self.influx.rows("SELECT count(value) FROM reading")
        return int(rows[0]["count"]) if rows else 0

    def publish(self, count: int, rate: float) -> dict[str, float]:
        out = subprocess.run([sys.executable, __file__, "--publisher", str(self.mosquitto.port), str(self.devices),
                              str(count), str(rate), str(self.published), str(self.qos), str(int(self.steady))],
                             capture_output=True,
                             check=True)  # fmt: skip
        self.published += count
        return dict(json.loads(out.stdout))

    def wait_db(self, expected: int, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while (n := self.in_db()) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {n} of {expected} readings reached InfluxDB after {timeout}s:\n"
                                 f"{self.history()}\n{self.hub_output()}")  # fmt: skip
            time.sleep(0.05)
        return time.perf_counter()

    def phase(self, label: str, count: int, rate: float) -> None:
        assert self.hub is not None
        before = usage(self.hub.pid)
        t0 = time.perf_counter()
        pub = self.publish(count, rate)
        t_sent = t0 + pub["send_seconds"]
        t_done = self.wait_db(self.published)
        after = usage(self.hub.pid)
        wall = t_done - t0
        lost = self.published - self.in_db()
        print(f"{label:>12}: {count:,} readings; publisher {count / pub['send_seconds']:,.0f}/s; into InfluxDB "
              f"{count / wall:,.0f} readings/s ({self.per_reading * count / wall:,.0f} points/s) end to end; last one "
              f"{max(0.0, t_done - t_sent) * 1000:,.0f} ms after it was sent; lost {lost}; hub CPU "
              f"{(after.cpu - before.cpu) / wall * 100:.0f}% of a core, RSS {after.rss / 1024:.0f} MiB "
              f"(peak {after.hwm / 1024:.0f} MiB)", flush=True)  # fmt: skip

    def outage(self, count: int) -> None:
        assert self.hub is not None
        self.influx.kill()
        self.publish(count, 0)
        deadline = time.monotonic() + 120
        while True:  # every reading (and its state change) in the spool, nothing left in memory
            h = self.history()
            if h.get("spool_points", 0) >= self.per_reading * count and h.get("pending", 1) == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the hub did not spool {count} readings: {h}")
            time.sleep(0.05)
        spooled, spool_bytes = h["spool_points"], h["spool_bytes"]
        replayed_before = h["replayed"]
        before = usage(self.hub.pid)
        self.influx.start()
        t0 = time.perf_counter()
        while (h := self.history()).get("spool_points", 1) > 0:
            if time.perf_counter() - t0 > 300:
                raise SystemExit(f"the spool did not drain: {h}")
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        after = usage(self.hub.pid)
        self.wait_db(self.published)
        lost = self.published - self.in_db()
        print(f"{'outage':>12}: influxd killed, {count:,} readings published: {spooled:,} points "
              f"({spool_bytes / 2**20:.1f} MiB) spooled; influxd back: replayed {h['replayed'] - replayed_before:,} "
              f"points in {wall:.1f} s = {spooled / wall:,.0f} points/s; hub CPU "
              f"{(after.cpu - before.cpu) / wall * 100:.0f}% during replay; lost {lost} of "
              f"{self.published:,} readings over the whole run", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000, help="simulated MQTT sensors (one point each)")
    ap.add_argument("--rates", default="1000,2000", help="paced publisher rates, readings/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per paced rate")
    ap.add_argument("--max-count", type=int, default=40_000, help="readings published flat out")
    ap.add_argument("--outage-count", type=int, default=40_000, help="readings published while influxd is down")
    ap.add_argument("--qos", type=int, choices=(0, 1), default=1, help="publisher QoS (1: the broker loses nothing)")
    ap.add_argument("--alone-count", type=int, default=200_000, help="readings for the history-alone phase")
    ap.add_argument("--steady", action="store_true", help="every sensor repeats its value: readings, no state changes")
    ap.add_argument("--publisher", nargs=7, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publisher:
        port, devices, count, rate, start, qos, steady = args.publisher
        publisher(int(port), int(devices), int(count), float(rate), int(start), int(qos), steady == "1")
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.devices} MQTT sensors, publisher QoS "
          f"{args.qos}, " + ("steady values" if args.steady else "every value changes"), flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bmhub-ingest-") as tmp:
        bench = Bench(Path(tmp), args.devices, args.qos, args.steady)
        try:
            bench.start()
            if args.alone_count:
                asyncio.run(history_alone(bench, args.alone_count))
            bench.publish(args.devices, 0)  # warm-up: every sensor once (series created, caches filled)
            bench.wait_db(bench.published)
            for rate in (float(r) for r in args.rates.split(",") if r):
                bench.phase(f"{rate:,.0f}/s", int(rate * args.seconds), rate)
            if args.max_count:
                bench.phase("flat out", args.max_count, 0)
            if args.outage_count:
                bench.outage(args.outage_count)
            bus = [b for b in bench.status().get("bus", []) if isinstance(b, dict) and b.get("dropped")]
            print(f"{'bus':>12}: " + (", ".join(f"{b['name']} dropped {b['dropped']}" for b in bus) or "no drops"))
            print(f"{'history':>12}: {json.dumps({k: v for k, v in bench.history().items() if k != 'spool'})}")
        finally:
            bench.stop()


if __name__ == "__main__":
    main()
