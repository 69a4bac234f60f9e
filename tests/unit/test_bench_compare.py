"""bench/compare.py: the aims' figures of two `make bench` records side by side, and the
history of committed runs. Records are built here from a run's shape, so nothing depends on
the machine's last bench or on the clone's git history."""
from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "compare.py"
spec = importlib.util.spec_from_file_location("bench_compare", BENCH)
assert spec is not None and spec.loader is not None
compare = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = compare  # dataclasses look their module up there
spec.loader.exec_module(compare)


def record(date: str = "2026-12-02T04:12:29Z", cpu: str = "Xeon") -> dict:
    """A run's record with the figures the aims are read from (values chosen for easy sums)."""
    rows = {"direct": 4000.0, "bare mitmdump": 600.0, "firewall": 840.0, "egress+firewall": 390.0,
            "egress relay+firewall": 600.0}
    return {
        "date": date,
        "proxies": {
            **{name: {"rps": rps} for name, rps in rows.items()},
            "api_headers": dict(rows, firewall=660.0),
            "parallel": dict(rows, **{"egress+firewall": 480.0}),
            "download": {name: {"mb_per_s": rps / 4, "firewall_rss_before_mib": 79.0, "firewall_peak_rss_mib": 80.0}
                         for name, rps in rows.items()},
            "dlp_body": {"firewall, text": {"firewall_cpu_s_per_request": 0.11},
                         "firewall, nearmiss": {"firewall_cpu_s_per_request": 0.25}},
            "versions": {"cores": 2, "cpu": cpu, "engine": "20.10.24", "mitmproxy": "12.3.1"},
        },
        "launch": {"launch": 0.9, "compose up --wait": 2.0, "compose up, 0.1 s checks": 1.5,
                   "down": 0.7, "compose down": 1.0},
        "launch_routed": {"launch": 1.2, "compose up --wait": 2.5, "compose up, 0.1 s checks": 1.8,
                          "down": 0.9, "compose down": 1.2},
    }


def row(text: str, label: str) -> list[str]:
    """The cells after the label on the figure's line."""
    line = next(line for line in text.splitlines() if line.startswith(label + " "))
    return line[len(label):].split()


def test_each_aim_is_read_from_its_own_figures_with_its_verdict():
    text = compare.side_by_side(None, record(), "", "this run")
    assert row(text, "keep-alive: firewall / bare hop") == [">=", "1.00x", "-", "1.40x", "met"]
    assert row(text, "keep-alive: egress + firewall, routed / bare hop") == [">=", "0.80x", "-", "0.65x", "unmet"]
    assert row(text, "API headers: firewall / bare hop") == [">=", "1.00x", "-", "1.10x", "met"]
    assert row(text, "16 connections: egress + firewall, routed / bare hop") == [">=", "0.80x", "-", "0.80x", "met"]
    assert row(text, "256 MB download: firewall memory growth") == ["<=", "8.00", "MiB", "-", "1.00", "MiB", "met"]
    assert row(text, "16 MiB body, nearmiss: firewall CPU per request") == ["<=", "0.20", "s", "-", "0.25", "s", "unmet"]
    assert row(text, "plain: launch / compose up --wait") == ["<=", "0.50x", "-", "0.45x", "met"]
    assert row(text, "routed: launch / compose up, 0.1 s checks") == ["<=", "0.50x", "-", "0.67x", "unmet"]
    assert row(text, "routed: down / compose down") == ["<=", "0.50x", "-", "0.75x", "unmet"]
    assert "earlier:" not in text


def test_an_earlier_run_stands_beside_with_the_change():
    earlier = record(date="2026-12-01T00:00:00Z")
    earlier["proxies"]["egress+firewall"]["rps"] = 300.0
    text = compare.side_by_side(earlier, record(), "bench/results.json at abc1234", "this run")
    assert row(text, "keep-alive: egress + firewall, routed / bare hop") == [
        ">=", "0.80x", "0.50x", "0.65x", "+0.15", "unmet"]
    assert text.splitlines()[0].startswith("earlier: bench/results.json at abc1234, 2026-12-01T00:00:00Z")
    assert "not the same machine" not in text


def test_another_machine_is_said():
    text = compare.side_by_side(record(cpu="AMD EPYC"), record(), "a", "b")
    assert "not the same machine or versions" in text


def test_a_figure_an_older_record_lacks_shows_as_missing_and_gets_no_verdict():
    older = record()
    del older["launch_routed"], older["proxies"]["egress relay+firewall"]
    text = compare.side_by_side(None, older, "", "old")
    assert row(text, "routed: launch / compose up --wait") == ["<=", "0.50x", "-", "-"]
    assert row(text, "keep-alive: egress + firewall, relayed / bare hop") == [">=", "0.80x", "-", "-"]
    assert row(text, "plain: down / compose down") == ["<=", "0.50x", "-", "0.70x", "unmet"]


def test_history_shows_each_run_once():
    first, second = record(date="2026-11-29T00:00:00Z"), record()
    second["launch"]["launch"] = 0.8
    retouched = copy.deepcopy(first)  # a later commit that touched the file, not the run
    lines = compare.history([("aaa1111", first), ("bbb2222", retouched), ("ccc3333", second)]).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["aaa1111", "ccc3333"]
    assert lines[2].split()[2:7] == ["1.40x", "0.65x", "0.40x", "0.48x", "0.70x"]


def test_a_revision_without_a_record_is_a_clear_error(monkeypatch, capsys):
    def no_such_revision(*args):
        raise compare.NoRecord("fatal: invalid object name 'nope'.")

    monkeypatch.setattr(compare, "git", no_such_revision)
    monkeypatch.setattr(compare, "working_copy", record)
    assert compare.main(["nope"]) == 1
    assert capsys.readouterr().err.strip() == (
        "bench compare: no bench/results.json at 'nope' (fatal: invalid object name 'nope'.)")


@pytest.mark.parametrize("argv", [["a", "b"], ["--all"]])
def test_unknown_arguments_print_the_usage(argv, capsys):
    assert compare.main(argv) == 2
    assert "compare.py --history" in capsys.readouterr().err
