"""`inv dashboard`: a live view for the operator, built with rich.

Three panels: the running bottles (containers, uptime), the requests (pending first, one
of them selected), the latest firewall decisions. Keys: up/down or j/k choose a pending
request, `a` approves it, `r` rejects it (`A`/`R`: with a note), `q` quits.

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


@dataclass
class Snapshot:
    bottles: dict[str, list[dict]] = field(default_factory=dict)   # slug -> containers (role, status)
    requests: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)            # the firewalls' latest audit lines


def snapshot(target) -> Snapshot:
    snap = Snapshot()
    out = target.run(docker.container_ls(docker.LABEL_SLUG), check=False).stdout
    for line in out.splitlines():
        item = json.loads(line)
        labels = dict(kv.split("=", 1) for kv in item.get("Labels", "").split(",") if "=" in kv)
        slug = labels.get(docker.LABEL_SLUG)
        if slug:
            snap.bottles.setdefault(slug, []).append({"role": labels.get(docker.LABEL_ROLE, "?"),
                                                      "status": item.get("Status", "")})
    snap.requests = supervision.requests(target)
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
        self.message = Text("")

    @property
    def pending(self) -> list[dict]:
        return [r for r in self.snap.requests if r["state"] == "pending"]

    def update(self, snap: Snapshot) -> None:
        self.snap = snap
        ids = [r["id"] for r in self.pending]
        if self.selected not in ids:
            self.selected = ids[0] if ids else None

    def move(self, step: int) -> None:
        ids = [r["id"] for r in self.pending]
        if ids:
            index = ids.index(self.selected) if self.selected in ids else 0
            self.selected = ids[(index + step) % len(ids)]

    def key(self, key: str, ask_note=lambda: "") -> bool:
        """Act on one key; False means quit."""
        if key in ("q", "\x03"):
            return False
        if key in ("j", "\x1b[B"):
            self.move(1)
        elif key in ("k", "\x1b[A"):
            self.move(-1)
        elif key in ("a", "r", "A", "R") and self.selected:
            verdict = "approved" if key.lower() == "a" else "rejected"
            note = ask_note() if key.isupper() else ""
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
            decisions.add_column(column, overflow="fold")
        for d in self.snap.decisions:
            # path, host and method are the agent's traffic, as the audit log holds it
            decisions.add_row(*(cell(d, k) for k in ("ts", "bottle", "decision", "method", "host", "path", "rule")),
                              style="red" if d.get("decision") == "deny" else None)
        keys = Text("↑/↓ j/k choose   a approve   r reject   A/R with a note   q quit", style="dim")
        return Group(bottles, requests_table(self.snap.requests, self.selected), decisions,
                     Panel(Group(self.message, keys), title="operator"))


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
