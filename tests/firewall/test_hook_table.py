"""The hook table (firewall.hook_table): each hook's handlers looked up once, called as
mitmproxy's own ``handle_lifecycle`` calls them. Every case runs the same chain through
mitmproxy's dispatch and through the table and compares what each handler saw."""

from __future__ import annotations

import asyncio
import logging

import pytest
from firewall import hook_table, main
from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import AddonManager
from mitmproxy.master import Master
from mitmproxy.options import Options
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import tflow


class Recorder:
    """An addon that notes each call of the hooks it has, as (its name, hook, argument)."""

    def __init__(self, calls: list, name: str, fail_on: str = "", halt_on: str = "", addons=()):
        self.calls, self.name, self.fail_on, self.halt_on = calls, name, fail_on, halt_on
        if addons:
            self.addons = list(addons)

    def _note(self, hook: str, data) -> None:
        self.calls.append((self.name, hook, id(data)))
        if hook == self.fail_on:
            raise ValueError(f"{self.name} fails in {hook}")
        if hook == self.halt_on:
            raise exceptions.AddonHalt()

    def request(self, flow):
        self._note("request", flow)

    def response(self, flow):
        self._note("response", flow)

    def update(self, flows):
        self._note("update", flows[0])


class AsyncRecorder(Recorder):
    async def request(self, flow):
        await asyncio.sleep(0)
        self._note("request-awaited", flow)


async def _dispatch(manager, flow) -> None:
    for hook in (HttpRequestHook(flow), HttpResponseHook(flow)):
        await manager.handle_lifecycle(hook)


def _run_then_unhook(run) -> None:
    """asyncio.run(run()), then remove the log handler its master put on the root logger
    (it forwards records to that master's loop, which is closed by then)."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        asyncio.run(run())
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)


def _both_ways(make_chain) -> tuple[list, list]:
    """The calls a fresh chain from `make_chain(calls)` saw under mitmproxy's dispatch and
    under the table's, for one flow's request and response hooks. The master lives in the
    loop it was made in (it logs through it)."""

    def calls_seen(use_table: bool) -> list:
        calls: list = []
        flow = tflow.tflow(resp=True)

        async def run():
            master = Master(Options(), with_termlog=False)
            master.addons.add(*make_chain(calls))
            if use_table:
                hook_table.install(master.addons)
            await _dispatch(master.addons, flow)

        _run_then_unhook(run)
        return [(name, hook) for name, hook, data in calls if data == id(flow)]

    return calls_seen(False), calls_seen(True)


def test_handlers_run_in_the_chains_order_an_addons_own_before_its_sub_addons(root_logger):
    def chain(calls):
        return [Recorder(calls, "a", addons=[Recorder(calls, "a.1"), Recorder(calls, "a.2")]), Recorder(calls, "b")]

    mitmproxy_way, table_way = _both_ways(chain)
    assert table_way == mitmproxy_way
    assert [n for n, h in table_way if h == "request"] == ["a", "a.1", "a.2", "b"]
    assert ("b", "update") in table_way, "the update hook of a flow is still called when an addon has it"


def test_an_error_skips_the_rest_of_that_addon_and_is_logged_as_mitmproxy_logs_it(root_logger, caplog):
    def chain(calls):
        return [Recorder(calls, "a", fail_on="request", addons=[Recorder(calls, "a.1")]), Recorder(calls, "b")]

    with caplog.at_level(logging.ERROR):
        mitmproxy_way, table_way = _both_ways(chain)
    assert table_way == mitmproxy_way
    assert ("a.1", "request") not in table_way and ("b", "request") in table_way
    errors = [r for r in caplog.records if "Addon error: a fails in request" in r.getMessage()]
    assert len(errors) == 2, "one line from each dispatch"
    assert errors[0].name == errors[1].name and errors[1].exc_info


def test_addon_halt_ends_the_hook(root_logger):
    def chain(calls):
        return [Recorder(calls, "a", halt_on="request"), Recorder(calls, "b")]

    mitmproxy_way, table_way = _both_ways(chain)
    assert table_way == mitmproxy_way
    assert ("b", "request") not in table_way and ("b", "response") in table_way


def test_an_async_handler_is_awaited(root_logger):
    def chain(calls):
        return [AsyncRecorder(calls, "a"), Recorder(calls, "b")]

    mitmproxy_way, table_way = _both_ways(chain)
    assert table_way == mitmproxy_way
    assert table_way.index(("a", "request-awaited")) < table_way.index(("b", "request"))


def test_an_options_error_propagates(root_logger):
    class Strict:
        def request(self, flow):
            raise exceptions.OptionsError("bad option")

    async def run():
        master = Master(Options(), with_termlog=False)
        master.addons.add(Strict())
        hook_table.install(master.addons)
        await _dispatch(master.addons, tflow.tflow())

    with pytest.raises(exceptions.OptionsError):
        asyncio.run(run())


def test_adding_or_removing_an_addon_through_the_manager_is_seen(root_logger):
    calls: list = []
    flow = tflow.tflow(resp=True)

    async def run():
        master = Master(Options(), with_termlog=False)
        master.addons.add(Recorder(calls, "a"))
        hook_table.install(master.addons)
        await _dispatch(master.addons, flow)  # the table is filled: "a" only
        late = Recorder(calls, "late")
        master.addons.add(late)
        calls.clear()
        await _dispatch(master.addons, flow)
        assert {name for name, _, _ in calls} == {"a", "late"}
        master.addons.remove(late)
        calls.clear()
        await _dispatch(master.addons, flow)
        assert {name for name, _, _ in calls} == {"a"}

    asyncio.run(run())


def test_the_sidecars_table_holds_what_mitmproxy_would_call_for_every_hook(root_logger):
    """The firewall's master as the launcher makes it: for each of mitmproxy's hooks the
    table names the same handlers, in the same order, as mitmproxy's own lookup."""

    async def make():
        return main.make_master(Options())

    master = asyncio.run(make())
    manager: AddonManager = master.addons
    assert manager.handle_lifecycle.__self__.__class__ is hook_table.HookTable, "installed by make_master"
    table = manager.handle_lifecycle.__self__
    handled = 0
    for name, cls in hooks.all_hooks.items():
        event = object.__new__(cls)  # the lookup reads only the hook's name
        expected = [func for addon in manager.chain for _, func in manager._iter_hooks(addon, event)]
        assert [f for group in table.handlers(event) for f in group] == expected, name
        handled += bool(expected)
    assert handled >= 10, "the firewall handles requests, responses, connections, TLS and WebSockets"
