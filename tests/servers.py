"""Real servers for tests, started on free loopback ports and always stopped.

A server whose binary is missing fails the test with the package to install: never a skip, so CI cannot go
green without the peer (scripts/test installs the packages).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["Mosquitto", "find_binary", "free_port", "make_test_ca", "wait_port"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
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


class Mosquitto:
    """A Mosquitto broker of the test's own: 127.0.0.1 only, TCP_NODELAY, persistence in ``workdir``."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.binary = find_binary("mosquitto", "mosquitto")
        self.workdir = workdir
        self.port = free_port()
        self.users = users
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
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
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)  # fmt: skip
        try:
            wait_port(self.port)
        except AssertionError:
            self.stop()
            raise AssertionError(f"mosquitto did not start: {self.log()}") from None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def log(self) -> str:
        f = self.workdir / "mosquitto.log"
        return f.read_text(errors="replace") if f.exists() else ""


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()
