"""`logs`: the firewall's audit log, one line per decision, as a table or JSON."""
import json
import sys

from invoke import Collection, task
from rich.table import Table
from rich.text import Text

from .. import console, docker
from ..errors import BottleError
from ..selection import current


def audit_lines(text: str):
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "decision" in record:
                yield record


COLUMNS = ("ts", "source", "decision", "method", "host", "path", "rule", "status", "reason")
# The sidecars that write audit lines: the firewall always, the git gate with git remotes.
SOURCES = {"firewall": "proxy", "gitgate": "gitgate"}


def cell(record: dict, column: str) -> Text:
    """A field as plain text: host, path and reason come from the agent's traffic, so
    rich markup (``[green]``) and terminal escapes in them are shown, not interpreted."""
    value = str(record.get(column, "firewall" if column == "source" else ""))
    if column == "ts":
        value = value[11:19]  # the time of day is enough on screen
    return console.plain(value)


# How many of each sidecar's last log lines `logs` reads unless told otherwise: the agent fills
# the log (100 MB a sidecar at most), and 100 MB of audit lines parse to about 760 MiB.
DEFAULT_TAIL = 10_000


@task(help={"blocked": "only refusals", "follow": "keep printing new decisions as they happen",
            "json": "raw JSON lines instead of a table",
            "tail": f"read this many of each sidecar's last log lines (default {DEFAULT_TAIL}; 0: all of them)",
            "source": "only this sidecar's lines: firewall or gitgate (default: both; --follow: firewall)"})
def logs(c, blocked=False, follow=False, json_=False, source=None, tail=DEFAULT_TAIL):
    """Show the audit log of the firewall and the git gate: one line per decision, fetch or push."""
    bottle = current(c, need_manifest=False)
    if source is not None and source not in SOURCES:
        raise BottleError(f"logs --source {source!r}: say firewall or gitgate")
    name = bottle.require("firewall", "proxy")
    if tail < 0:  # invoke gives an int (the default's type), or says the value is none
        raise BottleError(f"logs --tail {tail}: say how many lines, or 0 for all")
    wanted = (lambda r: r["decision"] == "deny") if blocked else (lambda r: True)
    if follow:
        role = source or "firewall"
        stream = AuditStream(wanted, json_)
        # the sidecar's stderr (mitmproxy's warnings, quoting what the agent sent): escaped, and
        # not kept for the hours a follow may run
        bottle.target.run(docker.logs(bottle.require(role, SOURCES[role]), follow=True), stream=True,
                          out_stream=stream, err_stream=console.VisibleStream(sys.stderr, keeps_output=False),
                          check=False)
        return
    records = []
    for role in ([source] if source else SOURCES):
        container = name if role == "firewall" else bottle.state.resource(role) or ""
        if not container:
            if source:
                bottle.require(role, SOURCES[role])
            continue
        text = bottle.run(docker.logs(container, tail=str(tail) if tail else None)).stdout
        records += [r for r in audit_lines(text) if wanted(r)]
    records.sort(key=lambda r: str(r.get("ts", "")))
    if json_:
        for record in records:
            print(json.dumps(record))
        return
    if not console.out.is_terminal:  # piped (grep, a file): one plain line per decision, never wrapped
        console.out.print(f"{name}: {len(records)} decision(s)")
        for record in records:
            console.out.print(line_of(record), soft_wrap=True)
        return
    table = Table(title=f"{name}: {len(records)} decision(s)", title_justify="left")
    for column in COLUMNS:
        table.add_column("time" if column == "ts" else column, overflow="fold",
                         no_wrap=column not in ("path", "reason"))
    for record in records:
        style = "red" if record["decision"] == "deny" else ("yellow" if record["decision"] == "warn" else "")
        table.add_row(*(cell(record, column) for column in COLUMNS), style=style)
    console.out.print(table)


def line_of(record: dict) -> Text:
    """One decision as one line of plain text (what the agent sent is never markup)."""
    return Text(" ").join(cell(record, column) for column in COLUMNS)


class AuditStream:
    """A file-like sink for `docker logs --follow` that prints each decision as it arrives (and
    that nobody reads back: the runner keeps none of it, `target.LinearOutput`)."""

    keeps_output = False

    def __init__(self, wanted, raw: bool):
        self.wanted, self.raw, self.buffer = wanted, raw, ""

    def write(self, data: str) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split("\n")
        for record in audit_lines("\n".join(lines)):
            if not self.wanted(record):
                continue
            if self.raw:
                print(json.dumps(record), flush=True)
            else:
                console.out.print(line_of(record), soft_wrap=True)

    def flush(self) -> None:
        pass


ns = Collection(logs)
