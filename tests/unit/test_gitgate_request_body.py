"""The git gate's request body reader (gitgate/server.py): a chunked body or one with a
length, at most `limit` bytes, and nothing but plain hex or decimal sizes (Python's int()
takes a sign, a 0x prefix and underscores: a negative chunk size let every later chunk past
the limit). A gzip body is inflated by the gate, at most `limit` bytes of it (git http-backend
inflates without a bound)."""
from __future__ import annotations

import gzip
import io
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from bottle_tasks.sidecars.gitgate import config, server


@pytest.fixture(autouse=True)
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RUN_DIR", str(tmp_path))


def read(body: bytes, limit: int = 1 << 20, deadline: float | None = None, **headers: str) -> bytes:
    handler = SimpleNamespace(rfile=io.BytesIO(body), headers={k.replace("_", "-"): v for k, v in headers.items()},
                              deadline=time.monotonic() + 60 if deadline is None else deadline)
    out, total = server.Handler.read_body(handler, limit)
    data = out.read()
    assert total == len(data)
    return data


def test_a_chunked_body_is_read_whole():
    assert read(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", Transfer_Encoding="chunked") == b"hello world"


@pytest.mark.parametrize("size", [b"-7fffffffffffffff", b"+5", b"0x5", b"0_5", b" ", b"", b"5 5", b"12345678901234567"])
def test_a_chunk_size_that_is_not_plain_hex_is_refused(size):
    with pytest.raises(server.BadRequest) as refused:
        read(size + b"\r\n\r\n" + b"A" * (3 << 20) + b"\r\n0\r\n\r\n", Transfer_Encoding="chunked")
    assert refused.value.status == 400


def test_chunks_past_the_limit_are_refused():
    with pytest.raises(server.BadRequest) as refused:
        read(b"400\r\n" + b"A" * 1024 + b"\r\n" * 1 + b"400\r\n" + b"A" * 1024 + b"\r\n0\r\n\r\n",
             limit=1500, Transfer_Encoding="chunked")
    assert refused.value.status == 413


@pytest.mark.parametrize("length", ["-1", "+5", "5_0", "0x5", "٥", ""])
def test_a_content_length_that_is_not_plain_digits_is_refused(length):
    with pytest.raises(server.BadRequest) as refused:
        read(b"hello", Content_Length=length)
    assert refused.value.status == 400


def test_a_body_with_a_length_is_read_to_it_and_bounded():
    assert read(b"hello world", Content_Length="5") == b"hello"
    with pytest.raises(server.BadRequest) as refused:
        read(b"x" * 10, limit=9, Content_Length="10")
    assert refused.value.status == 413


def test_a_gzip_body_is_inflated_whole():
    plain = b"0032want " + b"a" * 40 + b"\n0000" * 1000
    packed = gzip.compress(plain)
    assert read(packed, Content_Length=str(len(packed)), Content_Encoding="gzip") == plain
    chunked = b"%x\r\n" % len(packed) + packed + b"\r\n0\r\n\r\n"
    assert read(chunked, Transfer_Encoding="chunked", Content_Encoding="x-gzip") == plain


def test_a_gzip_body_that_inflates_past_the_limit_is_refused():
    bomb = gzip.compress(b"0032have " * (8 << 20))  # 72 MiB inflated, 70 KiB sent
    assert len(bomb) < 1 << 20
    with pytest.raises(server.BadRequest) as refused:
        read(bomb, limit=16 << 20, Content_Length=str(len(bomb)), Content_Encoding="gzip")
    assert refused.value.status == 413


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b"hello")[:-6], gzip.compress(b"hello") + b"more"])
def test_a_gzip_body_that_is_not_one_whole_gzip_stream_is_refused(body):
    with pytest.raises(server.BadRequest) as refused:
        read(body, Content_Length=str(len(body)), Content_Encoding="gzip")
    assert refused.value.status == 400


def test_a_body_in_an_encoding_git_does_not_send_is_refused():
    with pytest.raises(server.BadRequest) as refused:
        read(b"hello", Content_Length="5", Content_Encoding="br")
    assert refused.value.status == 415


@pytest.mark.parametrize("framing", [{}, {"Transfer_Encoding": "chunked"}], ids=["length", "chunked"])
def test_a_body_that_takes_longer_than_its_deadline_is_refused(framing):
    """Each read may wait a minute: a byte a minute held one of the gate's slots for ever."""
    body = b"5\r\nhello\r\n0\r\n\r\n" if framing else b"hello"
    with pytest.raises(server.BadRequest) as refused:
        read(body, deadline=time.monotonic() - 1, Content_Length="5", **framing)
    assert refused.value.status == 408


def test_connections_past_the_gates_bound_are_closed_at_once(monkeypatch):
    """One thread each: the agent opening thousands ran the gate into its pids limit."""
    monkeypatch.setattr(server.Server, "connections", threading.BoundedSemaphore(2))
    gate = server.Server(("127.0.0.1", 0), server.Handler)
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    try:
        held = [socket.create_connection(gate.server_address, timeout=5) for _ in range(2)]
        time.sleep(0.3)  # both taken by their threads, each waiting for its request line
        extra = socket.create_connection(gate.server_address, timeout=5)
        assert extra.recv(1) == b""  # closed at once, not waiting for a thread
        for sock in held:
            sock.close()
        time.sleep(0.3)
        again = socket.create_connection(gate.server_address, timeout=5)  # room again
        again.sendall(b"GET /_bottle/health HTTP/1.0\r\n\r\n")
        assert again.recv(100).startswith(b"HTTP/1.0 200")
        extra.close(), again.close()
    finally:
        gate.shutdown()
        gate.server_close()
