"""The requests board: what the agent asked, held until an operator decides or time runs out.

Plain Python (asyncio only), so the controller's tests can drive it without the MCP SDK.

The agent is hostile, so what it sends is bounded before it is kept: a reason or question
is cut to ``MAX_TEXT`` characters with control characters (terminal escapes, newlines
that would forge table rows) replaced, and at most ``MAX_PENDING`` requests wait at once;
past that a request is refused at once rather than queued.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import unicodedata
from dataclasses import dataclass, field

MAX_TEXT = 1000
MAX_PENDING = 16
# Recent ended requests shown beside the pending ones, kept in two lots: what the operator
# decided, and what ended without them (refused at once, timed out, the call cancelled). The
# agent makes as many of the second kind as it likes, at no cost: they must not push the
# operator's decisions off the record.
KEPT_DECIDED = 50
# The most of a refusal's reason kept (it may quote what the agent sent, at any length).
NOTE_SHOWN = 300
ID_SPACE = 1 << 24

PENDING, APPROVED, REJECTED, TIMED_OUT, REFUSED = "pending", "approved", "rejected", "timed-out", "refused"
VERDICTS = (APPROVED, REJECTED)


class BoardFull(Exception):
    pass


def clean(text: object, limit: int = MAX_TEXT) -> str:
    """Printable, one line, bounded: safe to show in a terminal, a table or a log line."""
    out = []
    for ch in str(text)[: limit * 2]:
        if ch in "\t\n\r":
            out.append(" ")
        elif unicodedata.category(ch)[0] == "C":  # controls, format chars (bidi overrides), surrogates
            out.append("\ufffd")
        else:
            out.append(ch)
    text = "".join(out).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Request:
    id: str
    kind: str            # host | route | question
    what: dict           # host: {host}; route: {host, paths, methods, inject}; question: {question}
    reason: str
    created: float = field(default_factory=time.time)
    state: str = PENDING
    note: str = ""
    decided: float | None = None

    def public(self) -> dict:
        return {"id": self.id, "kind": self.kind, "what": self.what, "reason": self.reason,
                "created": self.created, "state": self.state, "note": self.note, "decided": self.decided}


class Board:
    def __init__(self, max_pending: int = MAX_PENDING):
        self.max_pending = max_pending
        self.requests: dict[str, Request] = {}
        self._done: dict[str, asyncio.Event] = {}
        # ids: the n-th request's is n times an odd number plus another, both drawn here, modulo
        # 2^24: a bijection, so no id comes twice in 16.7 million requests, and none is guessable
        # from the bottle's start alone.
        self._issued = 0
        self._step = secrets.randbelow(ID_SPACE // 2) * 2 + 1
        self._offset = secrets.randbelow(ID_SPACE)

    def pending(self) -> list[Request]:
        return [r for r in self.requests.values() if r.state == PENDING]

    def submit(self, kind: str, what: dict, reason: str) -> Request:
        if len(self.pending()) >= self.max_pending:
            raise BoardFull(f"{self.max_pending} requests are already waiting for the operator")
        request = Request(id=self._new_id(), kind=kind, what=what, reason=clean(reason))
        self.requests[request.id] = request
        self._done[request.id] = asyncio.Event()
        self._forget_old()
        return request

    def refuse(self, kind: str, what: dict, reason: str, why: str) -> Request:
        """A request decided without asking anyone (a `never` host): kept for the record."""
        request = Request(id=self._new_id(), kind=kind, what=what, reason=clean(reason),
                          state=REFUSED, note=clean(why, NOTE_SHOWN), decided=time.time())
        self.requests[request.id] = request
        self._forget_old()
        return request

    async def wait(self, request: Request, timeout: float) -> Request:
        """Until the operator decides or `timeout` seconds pass (then: timed out)."""
        try:
            await asyncio.wait_for(self._done[request.id].wait(), timeout)
        except asyncio.TimeoutError:
            self._end_unanswered(request, f"no decision within {timeout:.0f} s")
        except asyncio.CancelledError:
            # The agent's call went away (its client disconnected): nobody waits for an answer,
            # so it must not hold one of the pending places, nor be approved for no one.
            self._end_unanswered(request, "the agent stopped waiting for a decision")
            raise
        finally:
            self._done.pop(request.id, None)
        return request

    @staticmethod
    def _end_unanswered(request: Request, why: str) -> None:
        if request.state == PENDING:
            request.state, request.decided, request.note = TIMED_OUT, time.time(), why

    def decide(self, request_id: str, verdict: str, note: str = "") -> Request:
        if verdict not in VERDICTS:
            raise ValueError(f"a verdict is one of {', '.join(VERDICTS)}")
        request = self.requests.get(request_id)
        if request is None:
            raise KeyError(f"no request {request_id!r}")
        if request.state != PENDING:
            raise ValueError(f"request {request_id} is already {request.state}")
        request.state, request.note, request.decided = verdict, clean(note), time.time()
        done = self._done.get(request_id)
        if done is not None:
            done.set()
        return request

    def _new_id(self) -> str:
        """An id no request has had before: a new request must never take the place (and the
        operator's decision) of one the operator is looking at, nor of one forgotten since
        (the operator may act on an id read from an older listing)."""
        while True:
            request_id = f"r{(self._issued * self._step + self._offset) % ID_SPACE:06x}"
            self._issued += 1
            if request_id not in self.requests:  # only after 2^24 requests
                return request_id

    def _forget_old(self) -> None:
        for lot in (VERDICTS, (TIMED_OUT, REFUSED)):
            ended = sorted((r for r in self.requests.values() if r.state in lot), key=lambda r: r.decided or 0)
            for old in ended[:-KEPT_DECIDED]:
                self.requests.pop(old.id, None)
