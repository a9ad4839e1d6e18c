"""``bmhub``: run the hub, validate a site model, show the site graph.

Exit codes: 0 fine, 1 the input is wrong (invalid site model, no status), 2 wrong usage, 3 the hub is not running
(``status``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from hub.adapter import Stage
from hub.errors import ConfigError, HubError, Problem
from hub.graph import SiteGraph
from hub.settings import Settings
from hub.site import DeviceKind, SiteModel, read_site

__all__ = ["find_site_model", "main"]

log = logging.getLogger("bmhub")


def find_site_model(explicit: str | None, settings: Settings) -> Path:
    """The site model to use: the argument, ``$BMHUB_SITE_MODEL``, ``./site_model.yaml``, the source
    checkout's, or the copy shipped inside the package, in that order."""
    if explicit:
        return Path(explicit)
    if settings.site_model is not None:
        return settings.site_model
    here = Path(__file__).resolve().parent
    for candidate in (Path("site_model.yaml"), here.parent / "site_model.yaml", here / "_data" / "site_model.yaml"):
        if candidate.is_file():
            return candidate
    return Path("site_model.yaml")


def _console() -> Console:
    """stdout console; piped output gets 160 columns instead of rich's 80 so tables stay one line per row."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def _report(problems: Sequence[Problem], out: Console) -> None:
    for p in problems:
        style = "yellow" if p.severity == "warning" else "red"
        out.print(str(p), style=style, markup=False, highlight=False, soft_wrap=True)


def _load(path: Path, out: Console) -> tuple[SiteModel, list[Problem]] | None:
    try:
        return read_site(path)
    except ConfigError as exc:
        _report(exc.problems, out)
        n = sum(p.severity == "error" for p in exc.problems)
        out.print(f"{path}: {n} error(s); the site model was not loaded", style="bold red", markup=False)
        return None


# ---------------------------------------------------------------------- validate
def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    path = find_site_model(args.path, settings)
    if args.json:
        try:
            model, warnings = read_site(path)
        except ConfigError as exc:
            _print_json({"file": str(path), "ok": False, **_problem_lists(exc.problems)})
            return 1
        counts = SiteGraph(model).counts()
        _print_json({"file": str(path), "ok": True, **_problem_lists(warnings), "counts": dict(counts)})
        return 0
    out = _console()
    loaded = _load(path, out)
    if loaded is None:
        return 1
    model, warnings = loaded
    _report(warnings, out)
    c = SiteGraph(model).counts()
    out.print(
        f"{path}: OK: {c['buildings']} buildings, {c['floors']} floors, {c['zones']} zones, {c['devices']} devices, "
        f"{c['points']} points, {len(model.device_types)} device types"
        + (f" ({len(warnings)} warning(s))" if warnings else ""),
        style="green",
        markup=False,
    )
    return 0


def _problem_lists(problems: Sequence[Problem]) -> dict[str, list[dict[str, Any]]]:
    def one(p: Problem) -> dict[str, Any]:
        return {"file": p.file, "line": p.line, "path": p.path, "message": p.message}

    return {
        "errors": [one(p) for p in problems if p.severity == "error"],
        "warnings": [one(p) for p in problems if p.severity == "warning"],
    }


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


# ---------------------------------------------------------------------- graph
def cmd_graph(args: argparse.Namespace, settings: Settings) -> int:
    path = find_site_model(args.path, settings)
    out = _console()
    loaded = _load(path, Console(stderr=True, soft_wrap=True))
    if loaded is None:
        return 1
    g = SiteGraph(loaded[0])
    for name, value, known in (
        ("building", args.building, g.buildings),
        ("floor", args.floor, g.floors),
    ):
        if value is not None and value not in known:
            Console(stderr=True).print(f"unknown {name} {value!r}; known: {', '.join(known)}", markup=False)
            return 2
    tree = _graph_data(g, args)
    if args.json:
        _print_json(tree)
        return 0
    root = Tree(f"[bold]{escape(tree['name'])}[/] ({tree['id']})")
    for b in tree["buildings"]:
        bt = root.add(f"[bold cyan]{escape(b['name'])}[/] ({b['id']}, {b['kind']})")
        for f in b["floors"]:
            ft = bt.add(f"[cyan]{escape(f['name'])}[/] ({f['id']})")
            for z in f["zones"]:
                extra = f", capacity {z['capacity']}" if z["capacity"] else ""
                extra += ", bookable" if z["bookable"] else ""
                zt = ft.add(f"{escape(z['name'])} ({z['id']}) [dim]{z['use']}, L{z['security_level']}{extra}[/]")
                for d in z["devices"]:
                    dt = zt.add(f"[green]{d['id']}[/] [dim]{d['kind']} · {d['type']} · {d['protocol']}[/]")
                    for p in d.get("points", []):
                        unit = escape(f" [{p['unit']}]") if p["unit"] else ""
                        rw = " rw" if p["writable"] else ""
                        dt.add(f"{p['id']} [dim]{p['kind']}{unit}{rw}[/]", highlight=False)
    out.print(root)
    return 0


def _graph_data(g: SiteGraph, args: argparse.Namespace) -> dict[str, Any]:
    kinds = {DeviceKind(k) for k in args.kind} if args.kind else None
    buildings = []
    for b in g.buildings.values():
        if args.building and b.id != args.building:
            continue
        floors = []
        for f in b.floors:
            if args.floor and f.id != args.floor:
                continue
            zones = []
            for z in g.zones_on(f.id):
                if args.level is not None and z.security_level != args.level:
                    continue
                devices = [d for d in g.devices_in(z.id) if kinds is None or d.kind in kinds]
                if kinds is not None and not devices:
                    continue
                zones.append({
                    "id": z.id, "name": z.spec.name, "use": z.spec.use.value,
                    "security_level": z.security_level, "capacity": z.spec.capacity, "bookable": z.bookable,
                    "devices": [_device_data(g, d.id, args.points) for d in devices],
                })  # fmt: skip
            if zones:
                floors.append({"id": f.id, "name": f.name, "level": f.level, "zones": zones})
        if floors:
            buildings.append({"id": b.id, "name": b.name, "kind": b.kind.value, "floors": floors})
    return {"id": g.site_id, "name": g.model.site.name, "buildings": buildings}


def _device_data(g: SiteGraph, device: str, with_points: bool) -> dict[str, Any]:
    d = g.devices[device]
    data: dict[str, Any] = {"id": d.id, "kind": d.kind.value, "type": d.spec.type, "protocol": d.protocol}
    if with_points:
        data["points"] = [
            {"id": g.points[p].id, "kind": g.points[p].kind.value, "unit": g.points[p].unit,
             "writable": g.points[p].writable}
            for p in d.points
        ]  # fmt: skip
    return data


# ---------------------------------------------------------------------- status
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from hub.runtime import STATUS_FILE

    path = settings.state_dir / STATUS_FILE
    err = Console(stderr=True, soft_wrap=True)
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        err.print(f"no status in {path}: the hub has not run with this BMHUB_STATE_DIR", markup=False)
        return 1
    except (OSError, ValueError) as exc:
        err.print(f"cannot read {path}: {exc}", markup=False)
        return 1
    age = (datetime.now(UTC) - datetime.fromisoformat(status["written"])).total_seconds()
    alive = _pid_alive(int(status.get("pid", 0)))
    if status.get("running") and (not alive or age > 3 * float(status.get("interval", 5))):
        status["running"] = False
        status["warning"] = f"last snapshot is {age:.0f}s old and the hub (pid {status.get('pid')}) is not running"
    if args.json:
        _print_json(status)
        return 0 if status["running"] else 3
    out = _console()
    mode = status["mode"]
    state = "running" if status["running"] else "not running"
    out.print(
        f"[bold]{status['site']}[/]: hub {state}; mode [bold]{mode['mode']}[/] since {mode['since']} ({mode['reason']})"
    )
    if "warning" in status:
        out.print(status["warning"], style="yellow", markup=False)
    table = Table("service", "stage", "state", "since", "restarts", "last error", box=None)
    for s in status["services"]:
        colour = {"running": "green", "retrying": "yellow", "failed": "red"}.get(s["state"], "")
        state = f"[{colour}]{s['state']}[/]" if colour else s["state"]
        table.add_row(
            s["name"], s["stage"], state, _short_time(s["since"]), str(s["restarts"]), escape(s["last_error"] or "")
        )
    out.print(table)
    out.print("points: " + ", ".join(f"{k} {v}" for k, v in status["points"].items()))
    drops = [f"{b['name']} dropped {b['dropped']}" for b in status["bus"] if b["dropped"]]
    out.print("bus: " + (", ".join(drops) if drops else "no drops"))
    for line in _detail_lines(status.get("details", {})):
        out.print(line, markup=False)
    mqtt = status.get("details", {}).get("mqtt")
    if mqtt:
        rejects = mqtt["rejects"]
        n = sum(d["rejected"] for d in rejects["devices"].values())
        out.print(f"mqtt: broker {mqtt['broker']}, {mqtt['connects']} connect(s), {mqtt['commands_sent']} command(s) "
                  f"sent, {mqtt['outbox']} waiting, {mqtt['commands_expired']} expired; {n} message(s) rejected "
                  f"from {len(rejects['devices'])} device(s)" + ("" if args.rejects or not n else
                                                                " (bmhub status --rejects lists them)"),
                  markup=False)  # fmt: skip
        if args.rejects:
            table = Table("time", "device", "topic", "reason", "payload", box=None)
            for r in rejects["recent"]:
                when = datetime.fromtimestamp(r["time"]).strftime("%H:%M:%S")
                table.add_row(when, escape(r["device"]), escape(r["topic"]), escape(r["reason"]),
                              escape(r["payload"][:40]))  # fmt: skip
            out.print(table)
    return 0 if status["running"] else 3


def _detail_lines(details: dict[str, Any]) -> list[str]:
    """One line each for history and BACnet in ``bmhub status`` (the JSON has everything)."""
    lines = []
    h = details.get("history")
    if h and h.get("backend") == "influxdb":
        lines.append(f"history: {h['endpoint']}, {h['state']}; {h['written']} point(s) written, {h['spooled']} "
                     f"spooled, {h['replayed']} replayed, {h['spool_points']} in the spool ({h['spool_bytes']} "
                     f"bytes); dropped: {h['dropped_budget']} over the spool budget, {h['dropped_nonfinite']} "
                     f"NaN/inf, {h['rejected']} refused by the database")  # fmt: skip
    elif h:
        lines.append(f"history: embedded store {h['path']}; {h['written']} row(s) written, {h['pending']} pending, "
                     f"{h['retention_days']} days kept")  # fmt: skip
    b = details.get("bacnet")
    if b:
        states = ", ".join(f"{n} {state}" for state, n in b["devices"].items())
        attention = f"; {b['attention_total']} need attention: " + ", ".join(b["attention"]) if b["attention"] else ""
        lines.append(f"bacnet: {b['address']}, devices {states}; points {b['points_cov']} by COV, "
                     f"{b['points_polled']} polled; {b['requests']} request(s), {b['notifications']} "
                     f"notification(s), {b['commands']} command(s){attention}")  # fmt: skip
    return lines


def _short_time(iso: str | None) -> str:
    """An ISO time as local ``YYYY-MM-DD HH:MM:SS`` for tables."""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S") if iso else ""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.runtime import Runtime

    path = find_site_model(args.path, settings)
    loaded = _load(path, Console(stderr=True, soft_wrap=True))
    if loaded is None:
        return 1
    model, warnings = loaded
    for w in warnings:
        log.warning("%s", w)
    log.info("site model %s, state in %s", path, settings.state_dir)
    runtime = Runtime(model, settings)
    return asyncio.run(_serve(runtime))


async def _serve(runtime: Any, on_ready: Any = None) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("%s received: stopping (send again to force)", signal.Signals(signum).name)
            runtime.request_stop()
        elif main is not None:
            log.warning("second signal: cancelling everything now")
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await runtime.run(on_ready=on_ready)
    except asyncio.CancelledError:
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


# ---------------------------------------------------------------------- demo and simulate
def _start_time(text: str | None, calendar: Any) -> datetime:
    from hub.demo import demo_start

    if text is None:
        return demo_start(calendar, datetime.now(UTC))
    start = datetime.fromisoformat(text)
    return start if start.tzinfo else start.replace(tzinfo=calendar.tz)


_EMBEDDED_MAX_SPEED = 200.0


def _simulated_time(args: argparse.Namespace, settings: Settings) -> tuple[SiteModel, Any, datetime, Any] | int:
    """The site model, its calendar, the simulated start and a ScaledClock for ``demo`` and ``simulate``;
    or the exit code after saying what is wrong."""
    from hub.calendar import Calendar
    from hub.clock import ScaledClock

    err = Console(stderr=True, soft_wrap=True)
    loaded = _load(find_site_model(args.path, settings), err)
    if loaded is None:
        return 1
    model = loaded[0]
    if args.speed <= 0:
        err.print(f"--speed must be above 0, got {args.speed:g}", markup=False)
        return 2
    calendar = Calendar(model.calendar, model.site.timezone)
    try:
        start = _start_time(args.start, calendar)
    except ValueError as exc:
        err.print(f"--start: {exc}", markup=False)
        return 2
    return model, calendar, start, ScaledClock(start, args.speed)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from hub.demo import ConsoleReport, SimulatedDevices, real_time_polling
    from hub.runtime import Runtime

    if args.speed > _EMBEDDED_MAX_SPEED and not os.environ.get("BMHUB_MQTT_HOST"):
        Console(stderr=True, soft_wrap=True).print(
            f"--speed must be above 0 and at most {_EMBEDDED_MAX_SPEED:g} with the embedded broker: it carries about "
            "850 QoS-1 messages/s, and the simulated building sends several hundred per second at 200x. For more, "
            "point BMHUB_MQTT_HOST at a Mosquitto.", markup=False)  # fmt: skip
        return 2
    setup = _simulated_time(args, settings)
    if isinstance(setup, int):
        return setup
    model, calendar, start, clock = setup
    # The demo keeps its own saved mode and status, apart from a real hub's on this machine.
    demo_settings = settings.model_copy(update={"state_dir": settings.state_dir / "demo"})
    runtime = Runtime(real_time_polling(model, args.speed), demo_settings, clock=clock)
    # BACnet devices, Modbus gateways and the UPS server must be up before their bridges start; MQTT devices
    # need the broker.
    sims: tuple[tuple[Stage, str], ...] = (("core", "bacnet"), ("core", "modbus"), ("core", "nut"),
                                           ("adapters", "mqtt"))  # fmt: skip
    for stage, protocol in sims:
        runtime.add_service(stage, SimulatedDevices(runtime, protocol, seed=args.seed, speed=args.speed, clock=clock,
                                                    site=find_site_model(args.path, settings)))  # fmt: skip
    runtime.add_service("api", ConsoleReport(runtime, clock))

    def banner() -> None:
        bridge = runtime.status()["details"].get("mqtt", {})
        broker = bridge.get("broker", "?")
        lines = [
            f"bmhub demo: {model.site.name}, a simulated building at {args.speed:g}x from "
            f"{start.astimezone(calendar.tz):%a %Y-%m-%d %H:%M} ({model.site.timezone})",
            f"  status page  {runtime.api.url if runtime.api else '(API disabled)'}",
            f"  MQTT broker  {broker}   e.g. mosquitto_sub -h {broker.split(':')[0]} -p {broker.split(':')[-1]} "
            f"-t 'bmhub/#' -v",
            "  Ctrl-C stops everything.",
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    return asyncio.run(_serve(runtime, on_ready=banner))


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Only the simulated devices, against a broker of your choice (to exercise a hub running elsewhere)."""
    from hub.graph import SiteGraph
    from hub.supervisor import ServiceHealth, supervise

    setup = _simulated_time(args, settings)
    if isinstance(setup, int):
        return setup
    model, _, start, _ = setup
    sim_module = importlib.import_module("adapters.sim")
    # The simulator scales time itself from a real clock (a ScaledClock here would apply the speed twice).
    sim = sim_module.MqttSimulator(SiteGraph(model), args.host, args.port, seed=args.seed, speed=args.speed,
                                   start=start, username=args.username,
                                   password=os.environ.get("BMHUB_SIM_PASSWORD"))  # fmt: skip

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel if task else (lambda: None))
        health = ServiceHealth("simulator", "adapters")
        log.info("simulating %d MQTT devices of %s on %s:%d at %gx", len(_mqtt_devices(model)),
                 model.site.id, args.host, args.port, args.speed)  # fmt: skip
        try:
            await supervise(sim, health)
        except asyncio.CancelledError:
            log.info("simulator stopped: %s", sim.counts())
            return 0
        return 1 if health.state.value == "failed" else 0

    return asyncio.run(main())


def cmd_bacnet_discover(args: argparse.Namespace, settings: Settings) -> int:
    """Who-Is to addresses or through a BBMD; the devices, their objects, or a site-model snippet."""
    bacnet = importlib.import_module("adapters.bacnet")  # lazily: hub imports no protocol library
    low = high = None
    if args.instances:
        lo, _, hi = args.instances.partition("-")
        try:
            low, high = int(lo), int(hi or lo)
        except ValueError:
            print(f"bmhub: --instances must be N or LOW-HIGH, got {args.instances!r}", file=sys.stderr)
            return 2
    try:
        found = asyncio.run(bacnet.discover(args.targets, bind=args.bind, bbmd=args.bbmd, low=low, high=high,
                                            wait=args.timeout, objects=not args.no_objects))  # fmt: skip
    except HubError as exc:
        print(f"bmhub: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _print_json([d.as_dict() for d in found])
    elif args.snippet:
        sys.stdout.write(bacnet.snippet(found))
    else:
        out = _console()
        for dev in found:
            out.print(f"device {dev.instance} at {dev.address}: {dev.name or '?'} ({dev.vendor or '?'} "
                      f"{dev.model or '?'}), {len(dev.objects)} object(s)" + (f"; {dev.error}" if dev.error else ""),
                      highlight=False, markup=False)  # fmt: skip
            for obj in dev.objects:
                extra = [x for x in (obj.unit or obj.bacnet_units, "commandable" if obj.commandable else None,
                                     "/".join(obj.states) if obj.states else None) if x]  # fmt: skip
                out.print(f"  {obj.object:<28} {obj.name or '':<32} {', '.join(extra)}", highlight=False,
                          markup=False)  # fmt: skip
        if not found:
            out.print("no device answered", highlight=False)
    return 0 if found else 1


def _mqtt_devices(model: SiteModel) -> list[str]:
    return [d.id for z in model.zones for d in z.devices if d.protocol == "mqtt"]


# ---------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bmhub", description="Building-management hub.")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING ... (default $BMHUB_LOG_LEVEL or INFO)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    site_help = "site model file (default: $BMHUB_SITE_MODEL, ./site_model.yaml, or the bundled one)"
    r = sub.add_parser("run", help="run the hub on a site model until SIGINT/SIGTERM")
    r.add_argument("path", nargs="?", help=site_help)
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("validate", help="check a site model; list every problem with file:line")
    v.add_argument("path", nargs="?", help=site_help)
    v.add_argument("--json", action="store_true", help="machine-readable result")
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser("demo", help="embedded broker + simulated building + hub + status page (Ctrl-C stops)")
    d.add_argument("path", nargs="?", help=site_help)
    d.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    d.add_argument("--seed", type=int, default=1, help="random seed of the simulated building (default 1)")
    d.add_argument("--start", help="simulated start, ISO 8601 (default 10:00 on the current or next business day)")
    d.set_defaults(func=cmd_demo)

    sm = sub.add_parser("simulate", help="only the simulated MQTT devices, against a broker you name")
    sm.add_argument("path", nargs="?", help=site_help)
    sm.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    sm.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    sm.add_argument("--username", help="broker user; the password comes from $BMHUB_SIM_PASSWORD")
    sm.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    sm.add_argument("--seed", type=int, default=1)
    sm.add_argument("--start", help="simulated start, ISO 8601 (default 10:00 on the current or next business day)")
    sm.set_defaults(func=cmd_simulate)

    st = sub.add_parser("status", help="health of a running hub (from $BMHUB_STATE_DIR/status.json); exit 3 if down")
    st.add_argument("--json", action="store_true", help="machine-readable status")
    st.add_argument("--rejects", action="store_true", help="list the latest rejected MQTT messages")
    st.set_defaults(func=cmd_status)

    b = sub.add_parser("bacnet", help="BACnet/IP tools")
    bsub = b.add_subparsers(dest="bacnet_command", required=True, metavar="TOOL")
    bd = bsub.add_parser("discover", help="find BACnet devices and objects (directed Who-Is or through a BBMD)")
    bd.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="address, host:port or range like 192.0.2.0/28 to send Who-Is to (port 47808 if none)",
    )
    bd.add_argument("--bbmd", help="register as a foreign device with this BBMD (host[:port]) and broadcast Who-Is")
    bd.add_argument("--instances", help="only device instances N or LOW-HIGH")
    bd.add_argument(
        "--bind", default="127.0.0.1:0", help="own address IPv4[/prefix][:port] (default 127.0.0.1 on a free port)"
    )
    bd.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for answers (default 2)")
    bd.add_argument("--no-objects", action="store_true", help="only the devices, not their objects")
    out = bd.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable result")
    out.add_argument("--snippet", action="store_true", help="print a site-model snippet (device types, devices)")
    bd.set_defaults(func=cmd_bacnet_discover)

    g = sub.add_parser("graph", help="show the site as a tree (buildings, floors, zones, devices)")
    g.add_argument("path", nargs="?", help=site_help)
    g.add_argument("--building", help="only this building id")
    g.add_argument("--floor", help="only this floor id")
    g.add_argument("--kind", action="append", choices=[k.value for k in DeviceKind],
                   help="only devices of this kind (repeatable)")  # fmt: skip
    g.add_argument("--level", type=int, choices=range(5), help="only zones of this security level")
    g.add_argument("--points", action="store_true", help="list each device's points")
    g.add_argument("--json", action="store_true", help="machine-readable tree")
    g.set_defaults(func=cmd_graph)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError: a BMHUB_* variable is wrong
        print(f"bmhub: invalid environment settings: {exc}", file=sys.stderr)
        return 2
    level = (args.log_level or settings.log_level).upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bmhub graph | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
