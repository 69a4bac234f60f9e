"""capacity.py: the connection cap and the pool of held request bodies, on their own."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

from firewall import capacity, unsent
from mitmproxy.test import tflow


def client(n: int):
    return SimpleNamespace(id=f"client-{n}", peername=(f"10.0.0.{n % 250}", 40000 + n), error=None)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_connections_past_the_cap_are_refused_and_reported_once_a_second():
    reports, clock = [], Clock()
    cap = capacity.ConnectionCap(lambda *a: reports.append(a), limit=3, clock=clock)
    clients = [client(n) for n in range(6)]
    for c in clients:
        cap.client_connected(c)
    assert [c.error is None for c in clients] == [True, True, True, False, False, False]
    assert "3 connections open" in clients[3].error
    # the first refusal is reported at once; the next two within the same second wait
    assert reports == [(clients[3].peername[0], 1, clients[3].error)]
    clock.now += capacity.REFUSAL_REPORT_INTERVAL
    cap.client_connected(late := client(7))
    assert late.error and reports[-1][1] == 3  # the two held back, and this one


def test_a_refused_connection_going_away_does_not_make_room():
    cap = capacity.ConnectionCap(lambda *a: None, limit=2)
    a, b, refused = client(1), client(2), client(3)
    for c in (a, b, refused):
        cap.client_connected(c)
    cap.client_disconnected(refused)  # mitmproxy reports it gone too
    cap.client_connected(again := client(4))
    assert again.error, "a refused connection's end freed a place it never had"
    cap.client_disconnected(a)
    cap.client_connected(after := client(5))
    assert after.error is None


def test_the_pool_takes_bodies_as_they_grow_and_refuses_past_its_capacity():
    pool = capacity.BodyPool(capacity=100)
    f1, f2 = tflow.tflow(), tflow.tflow()
    assert pool.hold(f1, 40) and pool.hold(f1, 60) and pool.held == 60
    assert pool.hold(f2, 40) and pool.held == 100
    assert not pool.hold(f2, 41) and pool.held == 100, "a refused chunk must charge nothing"
    pool.release(f1)
    assert pool.held == 40 and pool.hold(f2, 100) and pool.held == 100
    pool.release(f2)
    pool.release(f2)  # twice (the refusal, then the error hook): no harm
    assert pool.held == 0


def test_a_held_message_that_is_relayed_makes_room():
    pool = capacity.BodyPool(capacity=100)
    ws, other = tflow.twebsocketflow(), tflow.tflow()
    assert pool.hold(ws, 80) and not pool.hold(other, 30)
    assert pool.hold(ws, 0) and pool.held == 0  # the message went on: nothing is held for it
    assert pool.hold(other, 30) and pool.held == 30


def test_a_flow_that_is_gone_leaves_the_pool_even_unreleased():
    pool = capacity.BodyPool(capacity=100)
    f = tflow.tflow()
    assert pool.hold(f, 90)
    del f
    gc.collect()  # mitmproxy's layers hold flows in reference cycles: gone at the next collection
    assert pool.held == 0


def test_pool_release_addon_frees_a_flows_charge_when_it_ends():
    pool, release = capacity.POOL, capacity.PoolRelease()
    answered, failed, ws = tflow.tflow(resp=True), tflow.tflow(err=True), tflow.twebsocketflow()
    held = pool.held
    assert pool.hold(answered, 10) and pool.hold(failed, 20) and pool.hold(ws, 30)
    release.response(answered)
    release.error(failed)
    release.websocket_end(ws)
    assert pool.held == held


class Writer:
    """A connection's writer as ``unsent`` sees it: its transport's buffer, and its close."""

    def __init__(self, buffered: int = 0):
        self.transport = SimpleNamespace(get_write_buffer_size=lambda: self.buffered, abort=self.abort)
        self.buffered = buffered
        self.aborted = False
        self.closed = asyncio.Event()

    def abort(self):
        self.aborted = True
        self.closed.set()

    async def wait_closed(self):
        await self.closed.wait()


def test_bytes_a_peer_has_not_taken_fill_the_pool_until_it_takes_them():
    pool, writer, body = capacity.BodyPool(capacity=100), Writer(), tflow.tflow()
    pool.unsent(writer, 70)
    assert pool.held == 70 and not pool.hold(body, 40), "written and not sent: the pool is that much fuller"
    pool.unsent(writer, 10)  # the peer took most of it
    assert pool.held == 10 and pool.hold(body, 40) and pool.held == 50
    pool.unsent(writer, 0)
    assert pool.held == 40


def test_a_writer_that_is_gone_takes_its_unsent_bytes_along():
    pool, writer = capacity.BodyPool(capacity=100), Writer()
    pool.unsent(writer, 90)
    pool.unsent(writer, 0)
    pool.unsent(writer, 60)  # charged again: still one finalizer
    del writer
    gc.collect()
    assert pool.held == 0


def test_note_charges_each_connection_of_a_handler_and_its_http2_windows(monkeypatch):
    pool = capacity.BodyPool(capacity=100)
    monkeypatch.setattr(capacity, "POOL", pool)
    h2_held = {"bytes": 15}
    monkeypatch.setattr(unsent.h2_limits, "held_for", lambda client: h2_held["bytes"])
    client_writer, server_writer, client = Writer(30), Writer(50), Writer()  # any object stands for the client
    handler = SimpleNamespace(client=client, transports={client: SimpleNamespace(writer=client_writer),
                                                         "server": SimpleNamespace(writer=server_writer),
                                                         "opening": SimpleNamespace(writer=None)})
    unsent.note(handler)
    assert pool.held == 95
    server_writer.buffered, h2_held["bytes"] = 0, 5
    unsent.note(handler)
    assert pool.held == 35
    del handler.transports[client]  # the client's connection is over: its HTTP/2 layers with it
    unsent.note(handler)
    assert pool.held == 30  # what its writer still holds is `closed`'s to settle


def test_a_closed_connection_whose_peer_takes_nothing_is_cut(monkeypatch):
    pool = capacity.BodyPool(capacity=100)
    monkeypatch.setattr(capacity, "POOL", pool)
    monkeypatch.setattr(unsent, "CLOSE_FLUSH_SECONDS", 0.05)
    stalled, delivered, empty = Writer(60), Writer(30), Writer(0)

    async def close_them():
        unsent.closed(stalled)
        unsent.closed(delivered)
        unsent.closed(empty)
        assert pool.held == 90, "what a closed connection still holds stays charged"
        delivered.buffered = 0
        delivered.closed.set()  # its peer took the rest: the connection ended on its own
        await asyncio.sleep(0.01)
        assert pool.held == 60 and not delivered.aborted
        await asyncio.sleep(0.1)

    asyncio.run(close_them())
    assert stalled.aborted and pool.held == 0
