"""The asyncio NUT client against peers that misbehave: silence, garbage, a connection cut mid-answer, lines
too long, a refused connection. Against real servers: test_nut_upsd.py (upsd) and test_nut_sim.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.nut import NutClient, NutConnectionError, NutResponseError
from tests.servers import free_port

Script = Callable[[str], bytes | None]  # request line → raw answer; None: say nothing


@contextlib.asynccontextmanager
async def peer(script: Script, *, answers: int | None = None) -> AsyncIterator[int]:
    """A fake upsd on 127.0.0.1 answering each request line as ``script`` says, hanging up after ``answers``
    answers if given; yields its port."""
    handlers: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.add(writer)
        left = answers
        try:
            while line := await reader.readline():
                answer = script(line.decode().rstrip("\n"))
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                    if left is not None and (left := left - 1) == 0:
                        break
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()  # the handlers read EOF and end (cancelling them makes 3.11 log errors)
        if handlers:
            await asyncio.wait(handlers, timeout=2)
        await server.wait_closed()


async def test_silence_times_out_and_drops_the_connection() -> None:
    async with peer(lambda line: None) as port, NutClient("127.0.0.1", port, timeout=0.2) as client:
        with pytest.raises(NutConnectionError, match=r"no answer to LIST VAR ups within 0.2s"):
            await client.list_var("ups")
        assert not client.connected  # the late answer could be taken for the next request's: never reused
        with pytest.raises(NutConnectionError, match="not connected"):
            await client.get_var("ups", "ups.status")


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"BEGIN LIST VAR other\n", "expected BEGIN LIST"),
        (b"BEGIN LIST VAR ups\nVAR ups ups.status\nEND LIST VAR ups\n", "unexpected line"),
        (b'BEGIN LIST VAR ups\nVAR other ups.status "OL"\nEND LIST VAR ups\n', "unexpected line"),
        (b'BEGIN LIST VAR ups\nVAR ups ups.status "OL"\n', "closed the connection"),  # and hangs up
        (b'BEGIN LIST VAR ups\nVAR ups x "' + b"y" * 5000 + b'"\n', "longer than 4096 bytes"),
    ],
)
async def test_garbage_is_a_connection_error(answer: bytes, match: str) -> None:
    async with peer(lambda line: answer, answers=1) as port, NutClient("127.0.0.1", port) as client:
        with pytest.raises(NutConnectionError, match=match):
            await client.list_var("ups")
        assert not client.connected


async def test_err_answers_keep_the_connection() -> None:
    answers = {
        "LIST VAR ups": b"ERR DATA-STALE\n",
        "GET VAR ups ups.status": b'VAR ups ups.status "OL CHRG"\n',
        "USERNAME hub": b"OK\n",
        'PASSWORD "s3cret pass"': b"ERR INVALID-PASSWORD\n",
        "LOGOUT": b"OK Goodbye\n",
    }
    script = lambda line: answers.get(line, b"ERR UNKNOWN-COMMAND\n")  # noqa: E731
    async with peer(script) as port, NutClient("127.0.0.1", port) as client:
        with pytest.raises(NutResponseError) as err:
            await client.list_var("ups")
        assert (err.value.code, err.value.request) == ("DATA-STALE", "LIST VAR ups")
        assert await client.get_var("ups", "ups.status") == "OL CHRG"  # still in step
        with pytest.raises(NutResponseError) as err:
            await client.authenticate("hub", "s3cret pass")
        assert err.value.code == "INVALID-PASSWORD"
        assert "s3cret" not in str(err.value)  # a password never reaches a message
        assert client.connected


async def test_refused_connection() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(NutConnectionError, match=f"cannot connect to upsd 127.0.0.1:{port}"):
        async with NutClient("127.0.0.1", port, timeout=2):
            pass


async def test_cancelled_request_drops_the_connection() -> None:
    async with peer(lambda line: None) as port, NutClient("127.0.0.1", port, timeout=10) as client:
        task = asyncio.create_task(client.list_var("ups"), name="test:list")
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client.connected


async def test_nagle_is_off() -> None:
    async with peer(lambda line: b"OK\n") as port, NutClient("127.0.0.1", port) as client:
        sock = client._socket  # the only way to see a socket option
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_close_says_logout() -> None:
    seen: list[str] = []

    def script(line: str) -> bytes:
        seen.append(line)
        return b"OK Goodbye\n" if line == "LOGOUT" else b"Network UPS Tools upsd 2.8.0\n"

    async with peer(script) as port:
        async with NutClient("127.0.0.1", port) as client:
            assert await client.ver() == "Network UPS Tools upsd 2.8.0"
        assert seen == ["VER", "LOGOUT"]
        assert not client.connected
