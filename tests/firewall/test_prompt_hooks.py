"""Hooks that finish at once are answered within the event that asked for them
(firewall.prompt_hooks), on mitmproxy's real connection handler: what its layers are handed,
and when."""

from __future__ import annotations

import asyncio
import types

from firewall import mitm_limits, prompt_hooks
from mitmproxy.proxy import commands, context, events, server
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import tflow

# Both, in the sidecars' order: mitm_limits wraps server_event first, prompt_hooks around it.
mitm_limits.install(None)
prompt_hooks.install()


class Layers:
    """Stands in for a connection's layers: asks for `hooks` on its first event (each blocking,
    as a layer's hook is), and notes every event it is handed."""

    def __init__(self, *hooks: commands.StartHook):
        self.hooks = hooks
        self.seen: list[str] = []

    def handle_event(self, event):
        self.seen.append(type(event).__name__ if not isinstance(event, events.HookCompleted)
                         else f"HookCompleted({event.command.name})")
        if len(self.seen) == 1:
            for hook in self.hooks:
                hook.blocking = True
                yield hook
                yield commands.Log(f"asked for {hook.name}")


class Handler(server.ConnectionHandler):
    """mitmproxy's handler with its hooks answered here: at once, or after `wait` is set."""

    def __init__(self, layers: Layers, wait: asyncio.Event | None = None):
        ctx = context.Context(tflow.tclient_conn(), types.SimpleNamespace(tcp_timeout=600))
        super().__init__(ctx)
        self.layer = layers
        self.wait = wait
        self.handled: list[str] = []

    async def handle_hook(self, hook):
        if self.wait is not None:
            await self.wait.wait()
        self.handled.append(hook.name)

    def log(self, message, level=None, exc_info=None):
        pass


def run(coro):
    async def eagerly():
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # as mitmproxy's master
        return await coro()

    return asyncio.run(eagerly())


def test_hooks_that_finish_at_once_are_answered_within_the_event():
    flow = tflow.tflow()
    layers = Layers(HttpRequestHook(flow), HttpResponseHook(flow))

    async def one_event():
        handler = Handler(layers)
        await handler.server_event(events.DataReceived(handler.client, b"x"))
        # no turn of the event loop since: the answers came within the call
        return handler.handled, list(layers.seen)

    handled, seen = run(one_event)
    assert handled == ["request", "response"]
    assert seen == ["DataReceived", "HookCompleted(request)", "HookCompleted(response)"]


def test_a_hook_that_waits_is_answered_when_it_is_done():
    flow = tflow.tflow()
    layers = Layers(HttpRequestHook(flow))

    async def waiting():
        released = asyncio.Event()
        handler = Handler(layers, wait=released)
        await handler.server_event(events.DataReceived(handler.client, b"x"))
        before = list(layers.seen)
        await handler.server_event(events.DataReceived(handler.client, b"y"))  # other events go on meanwhile
        released.set()
        for _ in range(10):
            await asyncio.sleep(0)
        return before, list(layers.seen), getattr(handler, prompt_hooks.LEFT_TO_EVENT, None)

    before, after, left = run(waiting)
    assert before == ["DataReceived"]
    assert after == ["DataReceived", "DataReceived", "HookCompleted(request)"]
    assert left is None


def test_installed_once():
    hook_task, server_event = server.ConnectionHandler.hook_task, server.ConnectionHandler.server_event
    prompt_hooks.install()
    assert (server.ConnectionHandler.hook_task, server.ConnectionHandler.server_event) == (hook_task, server_event)


def test_what_each_event_left_unsent_is_still_noted(monkeypatch):
    """`mitm_limits` wraps ``server_event`` too (inside this one's): it still notes what each
    event left unsent."""
    seen = []
    monkeypatch.setattr(mitm_limits.unsent, "note", seen.append)
    flow = tflow.tflow()

    async def one_event():
        handler = Handler(Layers(HttpRequestHook(flow)))
        await handler.server_event(events.DataReceived(handler.client, b"x"))
        return handler

    handler = run(one_event)
    assert seen and all(h is handler for h in seen)


def test_completions_are_handed_on_even_when_the_event_failed(monkeypatch):
    """What fails after the layers acted (here: the note of what was left unsent) does not
    leave a hook that already finished unanswered."""
    calls = []

    def note_fails_once(handler):
        calls.append(handler)
        if len(calls) == 1:
            raise RuntimeError("note failed")

    monkeypatch.setattr(mitm_limits.unsent, "note", note_fails_once)
    flow = tflow.tflow()
    layers = Layers(HttpRequestHook(flow))

    async def one_event():
        handler = Handler(layers)
        try:
            await handler.server_event(events.DataReceived(handler.client, b"x"))
        except RuntimeError:
            pass
        return list(layers.seen), getattr(handler, prompt_hooks.LEFT_TO_EVENT, None)

    seen, left = run(one_event)
    assert seen == ["DataReceived", "HookCompleted(request)"]
    assert left is None
