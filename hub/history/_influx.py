"""Writing line protocol to InfluxDB: the v1 API (``POST /write?db=&rp=``) and the v2 API (``/api/v2/write``).

v1 speaks to InfluxDB 1.x, to 2.x through its v1 compatibility and to 3.x; v2 to InfluxDB 2.x, 3.x and 1.8+
(and to VictoriaMetrics, which takes both). v1 is a plain aiohttp POST; v2 goes through influxdb-client's
async client. Both are imported only when configured, and neither blocks the event loop.

A failed write raises :class:`WriteError` saying whether trying again can help (``retry``): the writer spools
those batches, and drops (counting them) what the database refused for good, so that one bad batch never
blocks the spool behind it.

========================================  ======================================================================
answer                                    what it means here
========================================  ======================================================================
2xx                                       written
no answer, connection refused, timeout    down or slow: retry (the write may have landed; a replay is harmless)
429, 5xx                                  overloaded or failing: retry
401, 403                                  credentials refused: retry (someone fixes them; the data waits), logged
404                                       no such database or bucket: retry (someone creates it), logged
413                                       batch too large: the writer splits it
other 4xx (400 unparsable, partial        refused for good: the points it names are dropped and counted
write, field type conflict; 422)
========================================  ======================================================================
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from typing import TYPE_CHECKING, Any, Protocol

from hub.errors import ConfigError, Problem
from hub.history._settings import InfluxSettings

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Backend", "InfluxV1", "InfluxV2", "WriteError", "make_backend"]

log = logging.getLogger(__name__)

_DROPPED = re.compile(r"dropped=(\d+)")


class WriteError(Exception):
    """A write that did not (wholly) land. ``retry``: worth trying again; ``dropped``: points refused for good
    (None: all of them); ``status``: the HTTP status, if there was an answer."""

    def __init__(self, message: str, *, retry: bool, status: int | None = None, dropped: int | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.status = status
        self.dropped = dropped


class Backend(Protocol):
    endpoint: str

    async def open(self) -> None: ...

    async def write(self, body: bytes) -> None:
        """Write lines (each ending in a newline); raise :class:`WriteError` if they did not all land."""
        ...

    async def ping(self) -> None:
        """Return if the server answers ``/ping``; raise :class:`WriteError` (``retry``) if not. Cheap: a down
        server is probed with this, not with a batch."""
        ...

    async def close(self) -> None: ...


def first_line(body: bytes | str | None) -> str:
    """The error an InfluxDB-like server gave: its JSON ``error``/``message``, else its first line of text."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        text = str(doc.get("error") or doc.get("message") or text)
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


def classify(endpoint: str, status: int, body: bytes | str | None, points: int) -> WriteError:
    detail = first_line(body)
    what = f"InfluxDB {endpoint}: batch of {points} point(s): HTTP {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):
        return WriteError(f"{what} (credentials refused: check BMHUB_INFLUX_TOKEN or USERNAME/PASSWORD)",
                          retry=True, status=status)  # fmt: skip
    if status == 404:
        return WriteError(f"{what} (create it, or fix the settings)", retry=True, status=status)
    if status == 429 or status >= 500:
        return WriteError(what, retry=True, status=status)
    if status == 413:
        return WriteError(what, retry=False, status=status)
    dropped: int | None = None
    m = _DROPPED.search(detail)
    if m is not None and "partial write" in detail:
        dropped = int(m.group(1))
    return WriteError(what, retry=False, status=status, dropped=dropped)


def _ssl_context(settings: InfluxSettings) -> ssl.SSLContext | None:
    if settings.ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise _ca_problem(settings, exc) from exc


def _ca_problem(settings: InfluxSettings, exc: Exception) -> ConfigError:
    return ConfigError([Problem("environment", None, "BMHUB_INFLUX_CA_FILE", f"{settings.ca_file}: {exc}")])


def _count(body: bytes) -> int:
    return body.count(b"\n") or 1


def _not_answered(endpoint: str, body: bytes, exc: BaseException, timeout: float) -> WriteError:
    """The database did not answer a write (timeout, refused or reset connection): worth retrying."""
    why = f"no answer within {timeout:g}s" if isinstance(exc, TimeoutError) else _describe(exc)
    return WriteError(f"InfluxDB {endpoint}: batch of {_count(body)} point(s): {why}", retry=True)


class InfluxV1:
    """``POST <url>/write?db=<database>[&rp=<retention policy>]&precision=ns`` with a line-protocol body."""

    def __init__(self, settings: InfluxSettings) -> None:
        assert settings.url is not None
        self.settings = settings
        self.endpoint = settings.endpoint()
        self._url = f"{settings.url}/write"
        self._params = {"db": settings.database, "precision": "ns"}
        if settings.retention_policy:
            self._params["rp"] = settings.retention_policy
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        import aiohttp

        s = self.settings
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        auth = None
        if s.token is not None:
            headers["Authorization"] = f"Token {s.token.get_secret_value()}"
        elif s.username is not None:
            auth = aiohttp.BasicAuth(s.username, s.password.get_secret_value() if s.password else "")
        connector = aiohttp.TCPConnector(limit=4, ssl=_ssl_context(s) or True)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=headers, auth=auth, timeout=aiohttp.ClientTimeout(total=s.timeout)
        )

    async def write(self, body: bytes) -> None:
        import aiohttp

        assert self._session is not None, "open() first"
        try:
            async with self._session.post(self._url, params=self._params, data=body) as resp:
                if 200 <= resp.status < 300:
                    return
                answer = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _not_answered(self.endpoint, body, exc, self.settings.timeout) from None
        raise classify(self.endpoint, status, answer, _count(body))

    async def ping(self) -> None:
        import aiohttp

        assert self._session is not None, "open() first"
        try:
            async with self._session.get(f"{self.settings.url}/ping") as resp:
                if 200 <= resp.status < 300:
                    return
                status = resp.status
        except TimeoutError:
            raise WriteError(f"InfluxDB {self.endpoint}: /ping: no answer within {self.settings.timeout:g}s",
                             retry=True) from None  # fmt: skip
        except aiohttp.ClientError as exc:
            raise WriteError(f"InfluxDB {self.endpoint}: /ping: {_describe(exc)}", retry=True) from None
        raise WriteError(f"InfluxDB {self.endpoint}: /ping: HTTP {status}", retry=True, status=status)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class InfluxV2:
    """``POST <url>/api/v2/write?org=&bucket=&precision=ns`` through influxdb-client's async client."""

    def __init__(self, settings: InfluxSettings) -> None:
        missing = [name for name in ("org", "bucket", "token") if getattr(settings, name) is None]
        if missing:
            raise ConfigError([Problem("environment", None, f"BMHUB_INFLUX_{m.upper()}", "required with api v2")
                               for m in missing])  # fmt: skip
        self.settings = settings
        self.endpoint = settings.endpoint()
        self._client: Any = None
        self._write: Any = None

    async def open(self) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        s = self.settings
        assert s.token is not None
        assert s.org is not None
        kwargs: dict[str, Any] = {}
        if s.ca_file is not None:
            kwargs["ssl_context"] = _ssl_context(s)
        self._client = InfluxDBClientAsync(url=s.url, token=s.token.get_secret_value(), org=s.org,
                                           timeout=int(s.timeout * 1000), **kwargs)  # fmt: skip
        self._write = self._client.write_api()

    async def write(self, body: bytes) -> None:
        import aiohttp
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        assert self._write is not None, "open() first"
        try:
            await self._write.write(bucket=self.settings.bucket, org=self.settings.org, record=body,
                                    write_precision=WritePrecision.NS)  # fmt: skip
        except ApiException as exc:
            if exc.status:
                raise classify(self.endpoint, int(exc.status), exc.body, _count(body)) from None
            raise WriteError(f"InfluxDB {self.endpoint}: batch of {_count(body)} point(s): {exc.reason}",
                             retry=True) from None  # fmt: skip
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _not_answered(self.endpoint, body, exc, self.settings.timeout) from None

    async def ping(self) -> None:
        import aiohttp
        from influxdb_client.rest import ApiException

        assert self._client is not None, "open() first"
        try:
            await self._client.ping()
        except ApiException as exc:
            raise WriteError(f"InfluxDB {self.endpoint}: /ping: HTTP {exc.status}", retry=True,
                             status=int(exc.status) if exc.status else None) from None  # fmt: skip
        except TimeoutError:
            raise WriteError(f"InfluxDB {self.endpoint}: /ping: no answer within {self.settings.timeout:g}s",
                             retry=True) from None  # fmt: skip
        except aiohttp.ClientError as exc:
            raise WriteError(f"InfluxDB {self.endpoint}: /ping: {_describe(exc)}", retry=True) from None

    async def close(self) -> None:
        client, self._client = self._client, None
        self._write = None
        if client is not None:
            await client.close()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def make_backend(settings: InfluxSettings) -> Backend:
    return InfluxV2(settings) if settings.api == "v2" else InfluxV1(settings)
