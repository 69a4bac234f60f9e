"""The supervise MCP server: the agent asks, the operator decides.

Tools (JSON schemas from the signatures, documented in docs/supervise.md):

- ``get_policy()``: what the bottle allows now (allowlist, routes without secrets, DLP
  actions, the hosts that can never be allowed);
- ``request_host(host, reason)``, ``request_route(host, paths, methods, reason, inject)``,
  ``ask_operator(question)``: each call is held open until the operator approves or
  rejects it, or the bottle's ``supervise.timeout`` passes.

The server decides nothing itself beyond refusing what can never be approved (a host of
``network.never``, a secret the manifest does not declare, a format that could name another
secret, a malformed host: ``rules.py``, checked again when an approval is applied). Decisions
arrive on a Unix socket in the container's private /tmp (``control.py``), which only
``docker exec`` reaches: nothing on the agent's network can approve anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from firewall.hosts import HostError, HostPattern, HostSet, parse_pattern
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request as HttpRequest
from starlette.responses import PlainTextResponse

from .board import APPROVED, Board, BoardFull, clean
from .rules import METHODS, PLACEHOLDER, route_problem

MAX_PATHS = 16


def log_line(**fields: Any) -> None:
    """One JSON object per line on stdout: every request and decision (the audit trail)."""
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Supervisor:
    """The board plus the bottle's settings; the MCP tools are thin wrappers around it."""

    def __init__(self, config_dir: Path):
        self.config_dir = config_dir
        config = json.loads((config_dir / "supervise.json").read_text())
        self.bottle: str = config["bottle"]
        self.timeout: float = float(config["timeout"])
        self.never = HostSet([parse_pattern(p, with_port=True) for p in config.get("never", [])])
        self.secrets: frozenset[str] = frozenset(config.get("secrets", []))
        self.board = Board()

    def policy(self) -> dict[str, Any]:
        """The bottle's policy as the controller last published it (re-read on every call)."""
        try:
            return json.loads((self.config_dir / "policy.json").read_text())
        except (OSError, ValueError):
            return {"error": "the policy is not published yet; ask again shortly"}

    async def ask(self, kind: str, what: dict, reason: str) -> dict[str, Any]:
        try:
            request = self.board.submit(kind, what, reason)
        except BoardFull as e:
            return {"status": "refused", "note": f"{e}; wait for an answer before asking again"}
        log_line(event="request", bottle=self.bottle, id=request.id, kind=kind, what=what, reason=request.reason)
        await self.board.wait(request, self.timeout)
        log_line(event="decision", bottle=self.bottle, id=request.id, verdict=request.state, note=request.note)
        answer = {"id": request.id, "status": request.state, "note": request.note}
        if request.state == APPROVED and kind != "question":
            answer["applied"] = "live: your next request can use it, no restart needed"
        return answer

    def refuse(self, kind: str, what: dict, reason: str, why: str) -> dict[str, Any]:
        request = self.board.refuse(kind, what, reason, why)
        log_line(event="decision", bottle=self.bottle, id=request.id, verdict=request.state, note=request.note)
        return {"id": request.id, "status": request.state, "note": request.note}

    def host_problem(self, host: str) -> tuple[str, str | None]:
        """(the entry as the firewall writes it, why it can never be approved or None).
        The controller checks `never` again when it applies a decision: this is the early no."""
        try:
            pattern = parse_pattern(host, with_port=True)
        except HostError as e:
            return clean(host, 200), f"not a host the firewall accepts: {e}"
        if self.never_covers(pattern):
            return pattern.entry, "this bottle's manifest lists it under network.never: it cannot be allowed"
        return pattern.entry, None

    def never_covers(self, pattern: HostPattern) -> bool:
        """Does `pattern` reach a host of `network.never` (on any port)?"""
        if not pattern.is_wildcard:
            return self.never.match(pattern.text) is not None
        under = f".{pattern.suffix}"
        return (self.never.match(f"any{under}") is not None
                or any(n.text.removeprefix("*.").endswith(under) for n in self.never))


def build_server(sup: Supervisor) -> MCPServer:
    server = MCPServer(
        name="supervise",
        instructions=(
            "Ask the person supervising this bottle. Read get_policy first; ask for a host "
            "(request_host) or an authenticated route (request_route) only when your work needs "
            "it, and say why. A request waits for the operator's decision and may take minutes."
        ),
        log_level="WARNING",
    )

    @server.tool(structured_output=True)
    def get_policy() -> dict[str, Any]:
        """The bottle's policy now: allowed hosts (and ports), passthrough hosts, egress routes
        (host, port when not 443 and 80, paths, methods, which headers are injected from which
        secret — never a value), DLP actions, and the hosts that can never be allowed."""
        return sup.policy()

    @server.tool(structured_output=True)
    async def request_host(host: str, reason: str) -> dict[str, Any]:
        """Ask the operator to allow `host` (an exact host name, `*.suffix`, or `host:port` for a
        port other than 443/80). Waits for the decision; returns status approved, rejected,
        timed-out or refused, with the operator's note."""
        text, problem = sup.host_problem(host)
        what = {"host": text}
        if problem:
            return sup.refuse("host", what, reason, problem)
        return await sup.ask("host", what, reason)

    @server.tool(structured_output=True)
    async def request_route(host: str, paths: list[str], methods: list[str], reason: str,
                            inject: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """Ask for an egress route on an allowed host (host:port for one port other than 443
        and 80, which a plain host name serves): path prefixes (each starting with /),
        methods (empty: any), and optionally headers the egress proxy sets from a secret the
        manifest declares ([{"header": "authorization", "secret": "GITHUB_TOKEN",
        "format": "Bearer {secret}"}]; the format, default "{secret}", holds {secret} exactly once
        and no other {...}). You never see the secret's value."""
        text, problem = sup.host_problem(host)
        paths = [clean(p, 200) for p in paths[:MAX_PATHS]]
        methods = [clean(m, 16).upper() for m in methods[:len(METHODS)]]
        injections = [_injection(i) for i in (inject or [])[:8]]
        what = {"host": text, "paths": paths or ["/"], "methods": methods, "inject": injections}
        problem = problem or route_problem(what, sup.secrets)
        if problem:
            return sup.refuse("route", what, reason, problem)
        return await sup.ask("route", what, reason)

    @server.tool(structured_output=True)
    async def ask_operator(question: str) -> dict[str, Any]:
        """Ask the operator a question; the answer is in `note`."""
        return await sup.ask("question", {"question": clean(question)}, "")

    @server.custom_route("/health", methods=["GET"])
    async def health(_request: HttpRequest) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    return server



def _injection(asked: dict) -> dict:
    """The injection as kept and shown: its three fields, cleaned; the format written out
    even when the agent left it to the default, so the operator sees what will be applied."""
    kept = {k: clean(v, 200) for k, v in asked.items() if k in ("header", "secret", "format")}
    return {"format": PLACEHOLDER, **kept}
