"""`logs`: the firewall's audit log, one line per decision, as a table or JSON."""
import json

from invoke import Collection, task
from rich.table import Table

from .. import console, docker
from ..context import current


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


COLUMNS = ("ts", "decision", "method", "host", "path", "rule", "status", "reason")


def cell(record: dict, column: str) -> str:
    value = str(record.get(column, ""))
    return value[11:19] if column == "ts" else value  # the time of day is enough on screen


@task(help={"blocked": "only refusals", "follow": "keep printing new decisions as they happen",
            "json": "raw JSON lines instead of a table"})
def logs(c, blocked=False, follow=False, json_=False):
    """Show the firewall's audit log: one line per decision."""
    bottle = current(c, need_manifest=False)
    name = bottle.require("firewall", "proxy")
    wanted = (lambda r: r["decision"] == "deny") if blocked else (lambda r: True)
    if follow:
        stream = AuditStream(wanted, json_)
        bottle.target.run(docker.logs(name, follow=True), stream=True, out_stream=stream, check=False)
        return
    result = bottle.run(docker.logs(name))
    records = [r for r in audit_lines(result.stdout) if wanted(r)]
    if json_:
        for record in records:
            print(json.dumps(record))
        return
    table = Table(title=f"{name}: {len(records)} decision(s)", title_justify="left")
    for column in COLUMNS:
        table.add_column("time" if column == "ts" else column, overflow="fold",
                         no_wrap=column not in ("path", "reason"))
    for record in records:
        style = "red" if record["decision"] == "deny" else ("yellow" if record["decision"] == "warn" else "")
        table.add_row(*(cell(record, column) for column in COLUMNS), style=style)
    console.out.print(table)


class AuditStream:
    """A file-like sink for `docker logs --follow` that prints each decision as it arrives."""

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
                console.out.print(" ".join(cell(record, column) for column in COLUMNS))

    def flush(self) -> None:
        pass


ns = Collection(logs)
