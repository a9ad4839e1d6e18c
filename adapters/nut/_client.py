"""A small asyncio client for upsd (RFC 9271): one connection, one request at a time.

The protocol has no request ids, so requests are serialised by a lock, and a request that times out or gets
an answer we cannot read leaves the connection unusable (the next line could belong to either request): the
client then closes it and every later call raises :class:`NutConnectionError`. ``ERR <code>`` answers raise
:class:`NutResponseError` and leave the connection usable.

Only reading is implemented (``VER``, ``LIST VAR``, ``GET VAR``) plus ``USERNAME``/``PASSWORD``/``LOGOUT``.
upsd 2.8 accepts any user name and password at ``USERNAME``/``PASSWORD`` and checks them only for commands that
need rights (``LOGIN``, ``SET``, ``INSTCMD``); reading needs no login. ``LOGIN`` is deliberately not offered:
it registers the client as a upsmon secondary, and a primary upsmon would then wait for the hub before cutting
the power in a forced shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Any, Self

from adapters.nut._protocol import join, split

__all__ = ["NutClient", "NutConnectionError", "NutError", "NutResponseError"]

_MAX_LINE = 4096  # bytes; upsd's own limit for a value is far lower
_MAX_LIST = 10_000  # lines in one LIST answer; more means we are reading garbage


class NutError(Exception):
    """Root of the client's errors."""


class NutConnectionError(NutError):
    """upsd could not be reached, closed the connection, did not answer in time, or answered garbage."""


class NutResponseError(NutError):
    """upsd answered ``ERR <code>``. ``code`` is e.g. ``DATA-STALE``; ``request`` what was asked."""

    def __init__(self, code: str, request: str, detail: str = "") -> None:
        self.code = code
        self.request = request
        self.detail = detail
        super().__init__(f"{request}: ERR {code}{' ' + detail if detail else ''}")


class NutClient:
    """One connection to upsd at ``host:port``; use as ``async with NutClient(host, port) as client:``.

    ``timeout`` bounds connecting and each request (seconds).
    """

    def __init__(self, host: str, port: int = 3493, *, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._socket: Any = None  # asyncio's TransportSocket: setsockopt, nothing that could disturb the stream
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return f"upsd {self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=_MAX_LINE)
        except TimeoutError as exc:
            raise NutConnectionError(f"cannot connect to {self.where}: no answer within {self.timeout}s") from exc
        except OSError as exc:
            raise NutConnectionError(f"cannot connect to {self.where}: {exc.strerror or exc}") from exc
        self._socket = self._writer.get_extra_info("socket")
        if self._socket is not None:
            # Requests are single short lines answered at once: Nagle would hold each back for an ACK.
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _quick_ack(self) -> None:
        # upsd writes each line of a LIST answer on its own with Nagle on, so after the first line it waits for
        # our ACK, which Linux delays by ~40 ms in an interactive exchange: every LIST VAR took 44 ms against
        # upsd 2.8.0, 0.2 ms with this. TCP_QUICKACK is not sticky, hence once per request. Linux only.
        if self._socket is not None and hasattr(socket, "TCP_QUICKACK"):
            with contextlib.suppress(OSError):
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    async def close(self) -> None:
        """Say LOGOUT if the connection is sound (politeness; upsd logs it), then close. Bounded, never raises."""
        if self.connected and not self._lock.locked():
            with contextlib.suppress(NutError, OSError, TimeoutError):
                async with asyncio.timeout(min(self.timeout, 1.0)):
                    await self.logout()
        self._drop()
        # Not awaiting wait_closed(): the transport is aborted, and a peer that never answers must not hold us.

    def _drop(self) -> None:
        writer, self._writer, self._reader, self._socket = self._writer, None, None, None
        if writer is not None:
            writer.transport.abort()

    # ------------------------------------------------------------------ requests
    async def ver(self) -> str:
        """The server's version banner (``VER``)."""
        [line] = await self._request(("VER",))
        return line

    async def authenticate(self, username: str, password: str) -> None:
        """Send ``USERNAME`` and ``PASSWORD``, not ``LOGIN`` (the module docstring says what upsd checks, when)."""
        await self._expect_ok(("USERNAME", username), "USERNAME")
        await self._expect_ok(("PASSWORD", password), "PASSWORD")

    async def logout(self) -> None:
        """``LOGOUT``: upsd answers ``OK Goodbye`` and closes the connection."""
        await self._expect_ok(("LOGOUT",), "LOGOUT")
        self._drop()

    async def list_var(self, ups: str) -> dict[str, str]:
        """Every variable of ``ups`` and its value (``LIST VAR``), in one round trip."""
        lines = await self._request(("LIST", "VAR", ups), list_of=("VAR", ups))
        values: dict[str, str] = {}
        for line in lines:
            words = split(line)
            if len(words) != 4 or words[0] != "VAR" or words[1] != ups:
                self._drop()
                raise NutConnectionError(f"{self.where}: LIST VAR {ups}: unexpected line {line[:200]!r}")
            values[words[2]] = words[3]
        return values

    async def get_var(self, ups: str, var: str) -> str:
        """One variable's value (``GET VAR``)."""
        [line] = await self._request(("GET", "VAR", ups, var))
        words = split(line)
        if len(words) != 4 or words[:3] != ["VAR", ups, var]:
            self._drop()
            raise NutConnectionError(f"{self.where}: GET VAR {ups} {var}: unexpected answer {line[:200]!r}")
        return words[3]

    # ------------------------------------------------------------------ plumbing
    async def _expect_ok(self, words: tuple[str, ...], what: str) -> None:
        [line] = await self._request(words)
        if not (line == "OK" or line.startswith("OK ")):
            self._drop()
            raise NutConnectionError(f"{self.where}: {what}: expected OK, got {line[:200]!r}")

    async def _request(self, words: tuple[str, ...], *, list_of: tuple[str, ...] | None = None) -> list[str]:
        """Send one request; return its answer line, or the lines between BEGIN LIST and END LIST."""
        shown = " ".join(words[:-1] if words[0] == "PASSWORD" else words)  # never a password in a message
        async with self._lock:
            if self._writer is None or self._reader is None or self._writer.is_closing():
                raise NutConnectionError(f"{self.where}: not connected")
            reader, writer = self._reader, self._writer
            try:
                async with asyncio.timeout(self.timeout):
                    writer.write(join(*words))
                    await writer.drain()
                    self._quick_ack()
                    first = await self._line(reader, shown)
                    if first.startswith("ERR"):
                        err = split(first)
                        code = err[1] if len(err) > 1 else "(none)"
                        raise NutResponseError(code, shown, " ".join(err[2:]))
                    if list_of is None:
                        return [first]
                    if split(first) != ["BEGIN", "LIST", *list_of]:
                        raise NutConnectionError(f"{self.where}: {shown}: expected BEGIN LIST, got {first[:200]!r}")
                    lines: list[str] = []
                    while split(line := await self._line(reader, shown)) != ["END", "LIST", *list_of]:
                        lines.append(line)
                        if len(lines) > _MAX_LIST:
                            raise NutConnectionError(f"{self.where}: {shown}: more than {_MAX_LIST} lines")
                    return lines
            except NutResponseError:
                raise
            except NutConnectionError:
                self._drop()
                raise
            except TimeoutError as exc:
                self._drop()
                raise NutConnectionError(f"{self.where}: no answer to {shown} within {self.timeout}s") from exc
            except OSError as exc:
                self._drop()
                raise NutConnectionError(f"{self.where}: {shown}: {exc.strerror or exc}") from exc
            except asyncio.CancelledError:
                self._drop()  # a request cut short leaves its answer in the stream
                raise

    async def _line(self, reader: asyncio.StreamReader, shown: str) -> str:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raise NutConnectionError(f"{self.where} closed the connection during {shown}") from exc
        except asyncio.LimitOverrunError as exc:
            raise NutConnectionError(f"{self.where}: {shown}: answer line longer than {_MAX_LINE} bytes") from exc
        return raw.decode("utf-8", "replace").rstrip("\r\n")
