"""Read `make bench` records (bench/results.json, and every earlier version of it in git)
and set their figures side by side: the ratios the performance aims are stated in, each
with its aim and whether the run met it.

    compare.py              the working copy's run against the last committed run before it
    compare.py REV          the working copy's run against the run committed at REV
    compare.py --history    one line per committed run, oldest first

Rates (requests/s, MB/s) depend on the machine, ratios much less, so only ratios and the
aims' own units (seconds of CPU, MiB) are compared; a line says when the two runs were on
different machines. A figure an older record lacks (it was added to the bench later) shows
as "-" and is left out of the verdicts.
"""
from __future__ import annotations

import json
import operator
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path("bench") / "results.json"  # relative to the repository, as git names it
BARE = "bare mitmdump"
ROUTED = "egress+firewall"
RELAYED = "egress relay+firewall"


@dataclass(frozen=True)
class Figure:
    label: str
    read: Callable[[dict], float | None]
    aim: str            # ">=" or "<="
    target: float
    unit: str           # "x" for a ratio

    def value(self, record: dict) -> float | None:
        try:
            return self.read(record)
        except (KeyError, TypeError, ZeroDivisionError):  # an older record, without this figure
            return None

    def met(self, value: float) -> bool:
        return {">=": operator.ge, "<=": operator.le}[self.aim](value, self.target)

    def show(self, value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}x" if self.unit == "x" else f"{value:.2f} {self.unit}"

    def show_aim(self) -> str:
        return f"{self.aim} {self.show(self.target)}"


def _over_bare(row: Callable[[dict, str], float], name: str) -> Callable[[dict], float]:
    return lambda record: row(record["proxies"], name) / row(record["proxies"], BARE)


def _keepalive(proxies: dict, name: str) -> float:
    return proxies[name]["rps"]


def _api_headers(proxies: dict, name: str) -> float:
    return proxies["api_headers"][name]


def _parallel(proxies: dict, name: str) -> float:
    return proxies["parallel"][name]


def _download(proxies: dict, name: str) -> float:
    return proxies["download"][name]["mb_per_s"]


def _memory_growth(record: dict) -> float:
    row = record["proxies"]["download"]["firewall"]
    return row["firewall_peak_rss_mib"] - row["firewall_rss_before_mib"]


def _dlp_cpu(kind: str) -> Callable[[dict], float]:
    return lambda record: record["proxies"]["dlp_body"][f"firewall, {kind}"]["firewall_cpu_s_per_request"]


def _launch(bottle: str, ours: str, theirs: str) -> Callable[[dict], float]:
    return lambda record: record[bottle][ours] / record[bottle][theirs]


def _figures() -> list[Figure]:
    proxy_rows = [("keep-alive", _keepalive), ("API headers", _api_headers),
                  ("16 connections", _parallel), ("256 MB download", _download)]
    figures = []
    for row_label, row in proxy_rows:
        figures += [
            Figure(f"{row_label}: firewall / bare hop", _over_bare(row, "firewall"), ">=", 1.0, "x"),
            Figure(f"{row_label}: egress + firewall, routed / bare hop", _over_bare(row, ROUTED), ">=", 0.8, "x"),
            Figure(f"{row_label}: egress + firewall, relayed / bare hop", _over_bare(row, RELAYED), ">=", 0.8, "x"),
        ]
    # "Flat" memory: a 256 MB download that were held would grow the firewall by hundreds of MiB.
    figures.append(Figure("256 MB download: firewall memory growth", _memory_growth, "<=", 8.0, "MiB"))
    figures += [Figure(f"16 MiB body, {kind}: firewall CPU per request", _dlp_cpu(kind), "<=", 0.2, "s")
                for kind in ("text", "nearmiss")]
    for bottle, bottle_label in (("launch", "plain"), ("launch_routed", "routed")):
        figures += [
            Figure(f"{bottle_label}: launch / compose up --wait",
                   _launch(bottle, "launch", "compose up --wait"), "<=", 0.5, "x"),
            Figure(f"{bottle_label}: launch / compose up, 0.1 s checks",
                   _launch(bottle, "launch", "compose up, 0.1 s checks"), "<=", 0.5, "x"),
            Figure(f"{bottle_label}: down / compose down", _launch(bottle, "down", "compose down"), "<=", 0.5, "x"),
        ]
    return figures


FIGURES = _figures()


def machine(record: dict) -> str:
    versions = record.get("proxies", {}).get("versions", {})
    return (f"{versions.get('cores', '?')} cores, {versions.get('cpu', 'CPU not recorded')}, "
            f"engine {versions.get('engine', '?')}, mitmproxy {versions.get('mitmproxy', '?')}")


def side_by_side(earlier: dict | None, later: dict, earlier_name: str, later_name: str) -> str:
    """The aims' figures of `later` beside `earlier`'s (None: no earlier run to compare with)."""
    lines = [f"later:   {later_name}, {later.get('date', 'undated')} ({machine(later)})"]
    if earlier is not None:
        lines.insert(0, f"earlier: {earlier_name}, {earlier.get('date', 'undated')} ({machine(earlier)})")
        if machine(earlier) != machine(later):
            lines.append("(not the same machine or versions: the ratios compare, the rates would not)")
    width = max(len(figure.label) for figure in FIGURES)
    lines.append(f"{'figure':<{width}}  {'aim':>11}  {'earlier':>9}  {'later':>9}  {'change':>7}  verdict")
    for figure in FIGURES:
        new = figure.value(later)
        old = figure.value(earlier) if earlier is not None else None
        change = f"{new - old:+.2f}" if new is not None and old is not None else ""
        verdict = "" if new is None else ("met" if figure.met(new) else "unmet")
        lines.append(f"{figure.label:<{width}}  {figure.show_aim():>11}  {figure.show(old):>9}  "
                     f"{figure.show(new):>9}  {change:>7}  {verdict}")
    return "\n".join(lines)


HISTORY_COLUMNS = (
    ("keep-alive firewall", "keep-alive: firewall / bare hop"),
    ("routed", "keep-alive: egress + firewall, routed / bare hop"),
    ("launch", "plain: launch / compose up --wait"),
    ("routed launch", "routed: launch / compose up --wait"),
    ("down", "plain: down / compose down"),
)


def history(runs: list[tuple[str, dict]]) -> str:
    """One line per run: a few headline ratios, and the machine they were measured on."""
    by_label = {figure.label: figure for figure in FIGURES}
    header = "  ".join(f"{title:>{max(len(title), 6)}}" for title, _ in HISTORY_COLUMNS)
    lines = [f"{'commit':<8}  {'date':<20}  {header}  machine"]
    shown = set()
    for commit, record in runs:
        if record.get("date") in shown:  # a commit that touched the file, not the run
            continue
        shown.add(record.get("date"))
        cells = "  ".join(f"{by_label[label].show(by_label[label].value(record)):>{max(len(title), 6)}}"
                          for title, label in HISTORY_COLUMNS)
        lines.append(f"{commit:<8}  {record.get('date', 'undated'):<20}  {cells}  {machine(record)}")
    return "\n".join(lines)


class NoRecord(Exception):
    pass


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise NoRecord(done.stderr.strip() or f"git {' '.join(args)} failed")
    return done.stdout


def committed(rev: str) -> dict:
    """The run recorded in bench/results.json as committed at `rev`."""
    try:
        text = git("show", f"{rev}:{RESULTS.as_posix()}")
    except NoRecord as e:
        raise NoRecord(f"no {RESULTS} at {rev!r} ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise NoRecord(f"{RESULTS} at {rev} is not JSON ({e})") from None


def committed_runs() -> list[tuple[str, dict]]:
    """Every committed version of bench/results.json, oldest first."""
    revs = git("log", "--reverse", "--format=%h", "--", RESULTS.as_posix()).split()
    return [(rev, committed(rev)) for rev in revs]


def last_committed_other_than(record: dict) -> tuple[str, dict] | None:
    """The newest committed run that is not `record` itself (the working copy may be committed)."""
    for rev in git("log", "--format=%h", "--", RESULTS.as_posix()).split():
        run = committed(rev)
        if run != record:
            return rev, run
    return None


def working_copy() -> dict:
    path = REPO / RESULTS
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NoRecord(f"{RESULTS} does not exist: run `make bench` first") from None
    except json.JSONDecodeError as e:
        raise NoRecord(f"{RESULTS} is not JSON ({e}): run `make bench` again") from None


def main(argv: list[str]) -> int:
    try:
        if argv == ["--history"]:
            print(history(committed_runs()))
            return 0
        if len(argv) > 1 or (argv and argv[0].startswith("-")):
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
        later = working_copy()
        earlier = (argv[0], committed(argv[0])) if argv else last_committed_other_than(later)
        if earlier is None:
            print(side_by_side(None, later, "", RESULTS.as_posix()))
        else:
            print(side_by_side(earlier[1], later, f"{RESULTS} at {earlier[0]}", RESULTS.as_posix()))
        return 0
    except NoRecord as e:
        print(f"bench compare: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
