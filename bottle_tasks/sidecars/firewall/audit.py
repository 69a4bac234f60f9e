"""Audit log: one JSON object per line on stdout (`jsonlines`), nothing else on stdout.

Two kinds of line (the controller's ``logs`` step reads them from ``docker logs``):

* a decision, one per request / CONNECT / raw tunnel / WebSocket message refused::

    {"ts": "...Z", "client": "172.30.5.3", "method": "GET", "host": "pypi.org", "port": 443,
     "path": "/simple/rich/", "decision": "allow", "rule": "allowlist", "reason": "matches *.pypi.org",
     "bytes_out": 0, "bytes_in": 1234, "status": 200}

  ``decision`` is allow | deny | warn; ``path`` never carries the query string; secrets
  that show in host or path are redacted before the line is written; a text field is cut to
  ``FIELD_LIMIT`` characters.

* a lifecycle event (has ``event`` and no ``decision``)::

    {"ts": "...Z", "event": "ready", ...}
    {"ts": "...Z", "event": "policy-reload", "ok": false, "reason": "..."}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO

from .failclosed import fail_closed
from .flowstate import Concern, meta, refused
from .jsonlines import JsonLines

DECISION_KEYS = (
    "ts",
    "client",
    "method",
    "host",
    "port",
    "path",
    "decision",
    "rule",
    "reason",
    "bytes_out",
    "bytes_in",
    "status",
)


# How much of a field the agent chose (a path, a host) a line keeps. A 60 KB path of control
# bytes wrote a line of 360 KB (`\u0001` each): 250 such requests rotated Docker's 100 MB of
# the log away, and with it every earlier decision.
FIELD_LIMIT = 512


def shown(text: str) -> str:
    """`text`, cut to FIELD_LIMIT characters, saying how long it was."""
    return text if len(text) <= FIELD_LIMIT else f"{text[:FIELD_LIMIT]}…(cut from {len(text)} characters)"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    def __init__(self, out: IO[str] | None = None, clock: Callable[[], str] = now_iso, batched: bool = False):
        """`batched`: the running firewall's log, its lines written together 2 ms at most after each (`jsonlines`)."""
        self.lines = JsonLines(out, batched=batched)
        self._clock = clock

    def _write(self, record: dict) -> None:
        self.lines.write(record)

    def decision(
        self,
        *,
        client: str | None,
        method: str,
        host: str,
        port: int | None,
        path: str,
        decision: str,
        rule: str,
        reason: str,
        bytes_out: int = 0,
        bytes_in: int = 0,
        status: int | None = None,
    ) -> dict:
        record = {
            "ts": self._clock(),
            "client": client,
            "method": shown(method),
            "host": shown(host),
            "port": port,
            "path": shown(path.split("?", 1)[0]),
            "decision": decision,
            "rule": shown(rule),
            "reason": shown(reason),
            "bytes_out": int(bytes_out or 0),
            "bytes_in": int(bytes_in or 0),
            "status": status,
        }
        self._write(record)
        return record

    def event(self, event: str, **fields) -> dict:
        record = {"ts": self._clock(), "event": event, **fields}
        self._write(record)
        return record


class Audit(Concern):
    """The addon that writes a flow's decision line when the flow is finished."""

    @fail_closed
    def http_connected(self, flow):
        self.fw.emit(flow)

    @fail_closed
    def http_connect_error(self, flow):
        refusal = self.fw.take_refusal(flow)
        if refusal is not None and not refused(flow):
            rule, reason = refusal
            self.fw.deny(flow, rule, reason)  # replaces mitmproxy's 502 with our 403
        self.fw.emit(flow)

    @fail_closed
    def response(self, flow):
        self.fw.emit(flow)

    @fail_closed
    def error(self, flow):
        refusal = self.fw.take_refusal(flow)
        if refusal is not None and not refused(flow):
            meta(flow).update(decision="deny", rule=refusal[0], reason=refusal[1])
        self.fw.emit(flow)
