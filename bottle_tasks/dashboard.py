"""`inv dashboard`: a live view for the operator, built with rich.

Three panels: the running bottles (containers, uptime), the requests (pending first, one
of them selected), the latest firewall decisions. Keys: up/down or j/k choose a pending
request, `a` approves it, `r` rejects it (`A`/`R`: with a note), `q` quits. A selected
request that ends is not replaced by another: the operator chooses again.

`Dashboard` is the screen without a terminal: it renders from a snapshot and acts on keys,
so a test drives it with rich's recording console. `run` adds the terminal: raw keys,
a refresh every second.
"""
from __future__ import annotations

import json
import os
import select
import sys
import termios
import time
import tty
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import docker, supervision
from .console import plain
from .errors import BottleError
from .steps.logs import cell
from .steps.supervise import requests_table

DECISIONS_SHOWN = 8
# Ended requests shown below the pending ones (`inv requests` has the board's whole record):
# the agent ends as many as it likes (refused at once, cancelled), and a screen full of them
# would push the firewall's decisions and the operator's panel off the bottom.
ENDED_SHOWN = 5


@dataclass
class Snapshot:
    bottles: dict[str, list[dict]] = field(default_factory=dict)   # slug -> containers (role, status)
    requests: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)            # the firewalls' latest audit lines
    silent: list[str] = field(default_factory=list)                # supervise sidecars that did not answer


def snapshot(target) -> Snapshot:
    snap = Snapshot()
    out = target.run(docker.container_ls(docker.LABEL_SLUG), check=False).stdout
    for line in out.splitlines():
        item = json.loads(line)
        slug = item.get("Slug")
        if slug:
            snap.bottles.setdefault(slug, []).append({"role": item.get("Role") or "?", "status": item.get("Status", "")})
    snap.requests = supervision.requests(target, snap.silent)
    for slug, containers in snap.bottles.items():
        if any(c["role"] == "firewall" and c["status"].startswith("Up") for c in containers):
            logs = target.run(docker.logs(docker_name(slug, "firewall"), tail=str(DECISIONS_SHOWN)), check=False)
            for text in logs.stdout.splitlines():
                if text.startswith("{") and '"decision"' in text:
                    try:
                        snap.decisions.append({"bottle": slug, **json.loads(text)})
                    except ValueError:
                        continue
    snap.decisions.sort(key=lambda d: d.get("ts", ""))
    snap.decisions = snap.decisions[-DECISIONS_SHOWN:]
    return snap


def docker_name(slug: str, role: str) -> str:
    return f"bottle-{slug}-{role}"


class Dashboard:
    def __init__(self, decide):
        self.decide = decide          # (request_id, "approved"|"rejected", note) -> summary
        self.snap = Snapshot()
        self.selected: str | None = None
        self.seen = False             # a snapshot was shown
        self.decided_here: set[str] = set()
        self.message = Text("")

    @property
    def pending(self) -> list[dict]:
        return [r for r in self.snap.requests if r["state"] == "pending"]

    def update(self, snap: Snapshot) -> None:
        """A new snapshot. The selection is what `a` and `r` act on, so only the operator's keys
        move it to another request: one that ends (the agent can end its own by cancelling the
        call) leaves nothing selected, never the next request, which the operator, about to
        press `a`, has not read. Only the first snapshot picks one: nothing was on screen before."""
        first = not self.seen
        self.snap, self.seen = snap, True
        ids = [r["id"] for r in self.pending]
        if self.selected is not None and self.selected not in ids:
            if self.selected not in self.decided_here:  # else the decision's own message stays
                self.message = plain(f"request {self.selected} ended ({self.state_of(self.selected)}) before a "
                                     "decision: nothing is selected; j/k chooses another", style="yellow")
            self.selected = None
        elif first and ids:
            self.selected = ids[0]

    def state_of(self, request_id: str) -> str:
        return next((r["state"] for r in self.snap.requests if r["id"] == request_id), "gone")

    def move(self, step: int) -> None:
        ids = [r["id"] for r in self.pending]
        if not ids:
            return
        if self.selected not in ids:
            self.selected = ids[0]  # nothing selected: the first key picks the top one
            return
        self.selected = ids[(ids.index(self.selected) + step) % len(ids)]

    def key(self, key: str, ask_note=lambda: "") -> bool:
        """Act on one key; False means quit."""
        if key in ("q", "\x03"):
            return False
        if key in ("j", "\x1b[B"):
            self.move(1)
        elif key in ("k", "\x1b[A"):
            self.move(-1)
        elif key in ("a", "r", "A", "R") and not self.selected:
            self.message = plain("nothing is selected: j/k chooses a pending request", style="yellow")
        elif key in ("a", "r", "A", "R") and self.selected:
            verdict = "approved" if key.lower() == "a" else "rejected"
            note = ask_note() if key.isupper() else ""
            self.decided_here.add(self.selected)
            try:
                self.message = plain(self.decide(self.selected, verdict, note), style="green")
            except BottleError as e:  # its message may quote the request
                self.message = plain(f"{e.message}" + (f" — {e.detail}" if e.detail else ""), style="red")
        return True

    def render(self) -> Group:
        bottles = Table(title="bottles", title_justify="left", expand=True)
        for column in ("bottle", "containers"):
            bottles.add_column(column)
        for slug, containers in sorted(self.snap.bottles.items()):
            bottles.add_row(plain(slug), plain(", ".join(f"{c['role']} ({c['status']})" for c in containers)))
        decisions = Table(title="latest firewall decisions", title_justify="left", expand=True)
        for column in ("time", "bottle", "decision", "method", "host", "path", "rule"):
            # one line each: a path the agent sent can be kilobytes long (`inv logs` has it whole)
            decisions.add_column(column, overflow="ellipsis", no_wrap=True, ratio={"host": 2, "path": 3}.get(column))
        for d in self.snap.decisions:
            # path, host and method are the agent's traffic, as the audit log holds it
            decisions.add_row(*(cell(d, k) for k in ("ts", "bottle", "decision", "method", "host", "path", "rule")),
                              style="red" if d.get("decision") == "deny" else None)
        keys = Text("↑/↓ j/k choose   a approve   r reject   A/R with a note   q quit", style="dim")
        ended = [r for r in self.snap.requests if r["state"] != "pending"][:ENDED_SHOWN]
        # One line per request, however much the agent wrote: the panels below stay on screen.
        # What `a` would approve is shown whole in the operator's panel.
        silent = plain(f"no answer from {', '.join(self.snap.silent)}: its requests are not shown", style="yellow") \
            if self.snap.silent else Text("")
        return Group(bottles, requests_table([*self.pending, *ended], self.selected, one_line=True), silent, decisions,
                     Panel(Group(keys, self.message, self.selected_whole()), title="operator"))

    def selected_whole(self) -> Text:
        request = next((r for r in self.pending if r["id"] == self.selected), None)
        if request is None:
            return Text("")
        return plain(f"selected {request['id']} ({request['bottle']}): {supervision.describe(request)}"
                     + (f" — reason: {request['reason']}" if request["reason"] else ""), style="bold")


def read_key(timeout: float) -> str | None:
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return None
    key = os.read(sys.stdin.fileno(), 1).decode(errors="replace")
    if key == "\x1b":  # an arrow key: ESC [ A
        more, _, _ = select.select([sys.stdin], [], [], 0.05)
        if more:
            key += os.read(sys.stdin.fileno(), 2).decode(errors="replace")
    return key


def run(c, decide) -> None:
    if not sys.stdin.isatty():
        raise BottleError("inv dashboard needs a terminal", "use `inv requests` and `inv approve ID` in scripts")
    target = supervision.c_target(c)
    board = Dashboard(decide)
    console = Console()
    saved = termios.tcgetattr(sys.stdin)

    def ask_note() -> str:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        live.stop()
        try:
            return input("note for the agent: ")
        finally:
            live.start()
            tty.setcbreak(sys.stdin)

    try:
        tty.setcbreak(sys.stdin)
        with Live(board.render(), console=console, screen=True, auto_refresh=False) as live:
            refreshed = 0.0
            while True:
                if time.monotonic() - refreshed > 1.0:
                    board.update(snapshot(target))
                    refreshed = time.monotonic()
                    live.update(board.render(), refresh=True)
                key = read_key(0.25)
                if key is None:
                    continue
                if not board.key(key, ask_note):
                    return
                refreshed = 0.0  # show the decision's effect at once
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
