"""The secret scan of a push: the lines its new commits add, their file names and commit
messages, through the firewall's own DLP rules and scanner (one implementation, with the
bottle's policy: its patterns, its action for the remote's host, its rules switched off).

Bounded: at most MAX_SCAN_BYTES of diff are read; a push with more is refused unscanned
(fail closed). Binary files are diffed as text (-a): a key in a binary file is still a key."""
from __future__ import annotations

import os
import subprocess

from firewall import dlp
from firewall import policy as firewall_policy

from . import config, upstream

MAX_SCAN_BYTES = 32 * 1024 * 1024
# Diff lines that are not added content: removed and context lines, hunk and file headers.
_SKIP = (b"-", b" ", b"@@", b"diff --git ", b"index ", b"similarity ", b"old mode ", b"new mode ",
         b"deleted file ", b"new file mode")


class TooLarge(Exception):
    pass


def added_text(repo: str, new_oids: list[str]) -> str:
    """Added lines, file names and messages of the commits reachable from `new_oids` and from
    no ref the mirror already has (those are the upstream's, already there)."""
    if not new_oids:
        return ""
    argv = ["git", "log", "-p", "-a", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
            "--format=%n%an <%ae>%n%B", *new_oids, "--not", "--all"]
    # The hook's environment carries git's quarantine (the pushed objects): keep it.
    env = {**upstream.local_env(), **{k: v for k, v in os.environ.items() if k.startswith("GIT_")}}
    proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None  # stdout=PIPE
    try:
        data = proc.stdout.read(MAX_SCAN_BYTES + 1)
        if len(data) > MAX_SCAN_BYTES:
            raise TooLarge(f"the push adds more than {MAX_SCAN_BYTES >> 20} MiB of diff, too much to scan")
        if proc.wait(timeout=120) != 0:
            raise TooLarge("git log could not list the pushed commits, so they cannot be scanned")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line[1:] if line.startswith(b"+") else line for line in data.split(b"\n")
             if not line.startswith(_SKIP) or line.startswith(b"+")]
    return b"\n".join(lines).decode("utf-8", "replace")


def findings(text: str, host: str) -> tuple[str, list[str]]:
    """(action, names of the rules that match) under the bottle's firewall policy for `host`."""
    pol = firewall_policy.load(config.CONF_DIR / "policy.json")
    action = pol.dlp.action_for(host)
    if action == "off" or not text:
        return action, []
    off = pol.dlp.rules_off_for(host)
    scanner = dlp.Scanner([rule for rule in pol.dlp.rules if rule.name not in off])
    return action, [rule.name for rule in scanner.scan_text(text)]


def describe(names: list[str]) -> str:
    whats = {rule.name: rule.what for rule in dlp.BUILTIN_RULES}
    return ", ".join(whats.get(name, f"a match for the policy pattern {name!r}") for name in names)
