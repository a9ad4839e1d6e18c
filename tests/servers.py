"""Real servers for tests, started on free loopback ports and always stopped.

A server whose binary is missing fails the test with the package to install: never a skip, so CI cannot go
green without the peer (scripts/test installs the packages).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "Influx",
    "Mosquitto",
    "ServerProcess",
    "VictoriaMetrics",
    "find_binary",
    "free_port",
    "free_udp_port",
    "make_test_ca",
    "wait_port",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to on ``host`` right now (BACnet/IP simulators and the hub's own socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listening on {host}:{port} after {timeout}s")


def find_binary(name: str, package: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}"):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(f"{name} is not installed: apt-get install {package} (scripts/test installs it when it may)")


def make_test_ca(workdir: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl); returns the CA certificate's path."""
    openssl = find_binary("openssl", "openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=workdir, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bmhub test CA",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return workdir / "ca.crt"


class ServerProcess:
    """A server binary of the test's own, started in ``workdir`` with its output in ``<name>.log`` there."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, args: list[str], port: int) -> None:
        """Run ``args``; return once ``port`` accepts connections, or fail with the end of its log."""
        with (self.workdir / f"{self.name}.log").open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(port, timeout=20)
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{self.name} did not start: {exc}\n{self.log()}") from None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused one must run to act on the signal
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        f = self.workdir / f"{self.name}.log"
        return f.read_text(errors="replace")[-4000:] if f.exists() else ""


class Mosquitto(ServerProcess):
    """A Mosquitto broker of the test's own: 127.0.0.1 only, TCP_NODELAY, persistence in ``workdir``."""

    name = "mosquitto"  # its own log_dest and its output share mosquitto.log

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None, tls: bool = False) -> None:
        super().__init__(workdir)
        self.binary = find_binary("mosquitto", "mosquitto")
        self.port = free_port()
        self.users = users
        lines = [
            f"listener {self.port} 127.0.0.1",
            "set_tcp_nodelay true",  # see docs/operations.md: Nagle costs 20-60 ms per command otherwise
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            f"log_dest file {workdir}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # Run as root, Mosquitto drops to the 'mosquitto' user, which cannot read our files in tmp_path.
            lines.append("user root")
        if tls:
            self.ca_file = make_test_ca(workdir)
            lines += [f"cafile {self.ca_file}", f"certfile {workdir / 'server.crt'}",
                      f"keyfile {workdir / 'server.key'}"]  # fmt: skip
        if users:
            pwfile = workdir / "passwords"
            pwfile.write_text("")
            passwd = find_binary("mosquitto_passwd", "mosquitto")
            for user, password in users.items():
                subprocess.run([passwd, "-b", str(pwfile), user, password], check=True, capture_output=True)
            pwfile.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines += ["allow_anonymous true"]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self._spawn([self.binary, "-c", str(self.conf)], self.port)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


class Nut:
    """A upsd of the test's own (Debian's nut-server) with one dummy-ups driver per UPS, on 127.0.0.1 only.

    ``upses`` maps each UPS name to the variables of its ``<name>.dev`` file (``ups.status: OL`` ...). The
    drivers run in dummy-once mode: they re-read the file whenever its timestamp changes, which :meth:`write`
    ensures. Configuration, state and the drivers' sockets live in a short directory under /tmp (a Unix socket
    path must stay under 108 bytes, which pytest's ``tmp_path`` can exceed); the processes' output goes to
    ``workdir``. upsd runs with ``MAXAGE maxage`` so a paused driver turns stale within seconds.

    The Debian ``/usr/sbin/upsd`` is a wrapper that refuses to start unless /etc/nut/nut.conf sets a MODE, so
    the real binaries under /lib/nut are run directly, in the foreground (``-F``), pointed at the directory by
    ``NUT_CONFPATH`` and ``NUT_STATEPATH``; as root with ``-u root``, so they can read the test's files.
    """

    def __init__(
        self,
        workdir: Path,
        upses: dict[str, dict[str, str]],
        *,
        users: dict[str, str] | None = None,
        maxage: int = 3,
    ) -> None:
        import tempfile

        self.upsd = self.nut_binary("upsd")
        self.driver = self.nut_binary("dummy-ups")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.confdir = Path(tempfile.mkdtemp(prefix="nut-", dir="/tmp"))
        self.port = free_port()
        self.values = {ups: dict(values) for ups, values in upses.items()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # "upsd" and one per UPS name
        self._mtimes: dict[str, int] = {}
        self.env = {**os.environ, "NUT_CONFPATH": str(self.confdir), "NUT_STATEPATH": str(self.confdir),
                    "NUT_ALTPIDPATH": str(self.confdir)}  # fmt: skip
        self.user_args = ["-u", "root"] if os.geteuid() == 0 else []
        sections = [f"[{ups}]\n\tdriver = dummy-ups\n\tport = {self.confdir / ups}.dev\n\tpollinterval = 1\n"
                    f"\tdesc = \"test UPS {ups}\"\n" for ups in upses]  # fmt: skip
        (self.confdir / "ups.conf").write_text("".join(sections))
        (self.confdir / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {self.port}\nMAXAGE {maxage}\n")
        accounts = {"admin": "admin-secret", **(users or {})}
        (self.confdir / "upsd.users").write_text(
            "".join(f"[{user}]\n\tpassword = {password}\n\tupsmon secondary\n" for user, password in accounts.items())
        )
        for path in self.confdir.iterdir():
            path.chmod(0o600)
        for ups in upses:
            self.write(ups)

    @staticmethod
    def nut_binary(name: str) -> str:
        """A NUT server binary (upsd, a driver): these live outside PATH, under /lib/nut on Debian."""
        for folder in ("/lib/nut", "/usr/lib/nut", "/usr/libexec/nut"):
            candidate = Path(folder) / name
            if candidate.is_file():
                return str(candidate)
        pytest.fail(f"{name} is not installed: apt-get install nut-server (scripts/test installs it when it may)")

    def write(self, ups: str, **changes: str) -> None:
        """Change variables of ``ups`` (``write("x", **{"ups.status": "OB"})``) and rewrite its .dev file.

        dummy-ups compares the file's timestamp in whole seconds, so each write moves it one second further
        (into the future if need be) to be seen however fast writes follow each other.
        """
        self.values[ups].update(changes)
        path = self.confdir / f"{ups}.dev"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{var}: {value}\n" for var, value in self.values[ups].items()))
        mtime = max(int(time.time()), self._mtimes.get(ups, 0) + 1)
        os.utime(tmp, (mtime, mtime))
        tmp.replace(path)
        self._mtimes[ups] = mtime

    def _spawn(self, key: str, args: list[str]) -> None:
        with (self.workdir / f"{key}.log").open("ab") as out:
            self.procs[key] = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def start_driver(self, ups: str) -> None:
        assert ups not in self.procs or self.procs[ups].poll() is not None
        self._spawn(ups, [self.driver, "-a", ups, "-F", *self.user_args])

    def start(self) -> None:
        """Start every driver, then upsd; return once upsd serves every UPS's data (not ``WAIT``)."""
        for ups in self.values:
            self.start_driver(ups)
        try:
            self.wait_drivers()  # else upsd finds no socket and tries again only seconds later
            self.start_upsd()
            for ups in self.values:
                self.wait_status(ups)
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"NUT did not start: {exc}\n{self.log()}") from None

    def wait_drivers(self, timeout: float = 10.0) -> None:
        """Until every driver has its socket up (``dummy-ups-<ups>`` in the state directory)."""
        deadline = time.monotonic() + timeout
        missing = list(self.values)
        while time.monotonic() < deadline:
            missing = [ups for ups in self.values if not (self.confdir / f"dummy-ups-{ups}").exists()]
            if not missing:
                return
            time.sleep(0.02)
        raise AssertionError(f"dummy-ups made no socket for {', '.join(missing)} within {timeout}s")

    def start_upsd(self) -> None:
        assert "upsd" not in self.procs or self.procs["upsd"].poll() is not None
        self._spawn("upsd", [self.upsd, "-F", *self.user_args])
        wait_port(self.port)

    def stop_upsd(self) -> None:
        self._end("upsd")

    def query(self, ups: str, var: str = "ups.status") -> str:
        """``GET VAR`` over a fresh connection: the value, or ``ERR <code>`` as upsd said it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(f"GET VAR {ups} {var}\n".encode())
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        line = answer.decode().strip()
        return line.split('"')[1] if line.startswith("VAR ") else line

    def wait_status(self, ups: str, expected: str | None = None, timeout: float = 10.0) -> str:
        """Poll ``ups.status`` until it is ``expected`` (None: any status with data: not WAIT, empty or ERR).

        Returns the status; AssertionError naming the last answer after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        answer = ""
        while time.monotonic() < deadline:
            try:
                answer = self.query(ups)
            except OSError as exc:
                answer = str(exc)
            has_data = answer not in ("", "WAIT") and not answer.startswith("ERR")
            if answer == expected or (expected is None and has_data):
                return answer
            time.sleep(0.05)
        raise AssertionError(f"ups.status of {ups} still {answer!r} after {timeout}s")

    def stop_driver(self, ups: str, sig: signal.Signals = signal.SIGTERM) -> None:
        self._end(ups, sig)

    def pause_driver(self, ups: str) -> None:
        """SIGSTOP: the driver stops answering upsd's pings, and upsd turns its data stale after MAXAGE."""
        self.procs[ups].send_signal(signal.SIGSTOP)

    def resume_driver(self, ups: str) -> None:
        self.procs[ups].send_signal(signal.SIGCONT)

    def _end(self, key: str, sig: signal.Signals = signal.SIGTERM) -> None:
        proc = self.procs.get(key)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused process acts on SIGTERM only once resumed
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """upsd first (it would log every driver leaving), then the drivers; the directory goes too."""
        self._end("upsd")
        for key in list(self.procs):
            self._end(key)
        shutil.rmtree(self.confdir, ignore_errors=True)

    def log(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.workdir.glob("*.log")))


# ---------------------------------------------------------------------- time-series servers (hub.history)


class Influx(ServerProcess):
    """An influxd of the test's own (Debian's influxdb, 1.x): HTTP on a free loopback port, auth off, reporting
    and self-monitoring off, data under ``workdir``. :meth:`kill`, :meth:`pause` and :meth:`start` again play
    an outage; the data survives a restart (WAL on disk)."""

    name = "influxd"

    def __init__(self, workdir: Path, database: str = "bmhub", *, max_body_size: int = 25_000_000) -> None:
        super().__init__(workdir)
        self.binary = find_binary("influxd", "influxdb")
        self.database = database
        self.port = free_port()
        self.rpc_port = free_port()
        self.conf = workdir / "influxdb.conf"
        self.conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{workdir}/meta"\n  logging-enabled = false\n'
            f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n  query-log-enabled = false\n'
            "[retention]\n  enabled = false\n"
            "[shard-precreation]\n  enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            f'[http]\n  enabled = true\n  bind-address = "127.0.0.1:{self.port}"\n  auth-enabled = false\n'
            f"  log-enabled = false\n  max-row-limit = 0\n  max-body-size = {max_body_size}\n"
            '[logging]\n  level = "warn"\n'
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or start again after :meth:`kill`/:meth:`stop`) and create the database; return once it answers."""
        assert self.proc is None or self.proc.poll() is not None
        self._spawn([self.binary, "run", "-config", str(self.conf)], self.port)
        try:
            self.query(f'CREATE DATABASE "{self.database}"', method="POST")
        except (AssertionError, OSError) as exc:
            self.stop()
            raise AssertionError(f"influxd did not create its database: {exc}\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL: gone mid-request, no goodbye (connections reset, the port refuses)."""
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung or very slow server)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def query(self, q: str, *, method: str = "GET", database: str | None = None) -> list[dict[str, object]]:
        """Run InfluxQL through ``/query`` (times as ns epochs); the ``series`` of the first result."""
        params = {"q": q, "epoch": "ns", "db": database or self.database}
        data = None
        url = f"{self.url}/query"
        if method == "POST":
            data = urllib.parse.urlencode(params).encode()
        else:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10) as resp:
            doc = json.loads(resp.read())
        result = doc["results"][0]
        if "error" in result:
            raise AssertionError(f"InfluxQL {q!r}: {result['error']}")
        return list(result.get("series", []))

    def rows(self, q: str) -> list[dict[str, object]]:
        """The rows of a query as dicts (column → value), series tags included."""
        out = []
        for series in self.query(q):
            for values in series["values"]:
                out.append({**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))})
        return out

    def write(self, body: str) -> None:
        req = urllib.request.Request(f"{self.url}/write?db={self.database}&precision=ns", data=body.encode(),
                                     method="POST")  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204, resp.read()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[Influx]:
    server = Influx(tmp_path / "influxdb")
    server.start()
    yield server
    server.stop()


class VictoriaMetrics(ServerProcess):
    """A VictoriaMetrics single node of the test's own (Debian's victoria-metrics) on a free loopback port.

    It takes InfluxDB line protocol on ``/write`` and ``/api/v2/write`` (org, bucket and token are accepted and
    ignored) and stores each numeric field as a series ``<measurement>_<field>`` with the tags as labels, at
    millisecond precision; string fields are not stored. :meth:`export` reads raw samples back."""

    name = "victoria-metrics"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = find_binary("victoria-metrics", "victoria-metrics")
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.binary, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.workdir}/data",
                "-retentionPeriod=100y", "-loggerLevel=ERROR", "-search.latencyOffset=0s"]  # fmt: skip
        self._spawn(args, self.port)

    def export(self, match: str) -> list[dict[str, object]]:
        """Raw samples of the series ``match`` selects (``/api/v1/export``): one dict per series, with
        ``metric`` (labels), ``values`` and ``timestamps`` (ms). Flushes the ingestion buffers first."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass
        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(url, timeout=10) as resp:
            return [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "victoria-metrics")
    server.start()
    yield server
    server.stop()
