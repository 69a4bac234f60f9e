"""The secret scan of a push: every object it adds, through the firewall's own DLP rules and
scanner (one implementation, with the bottle's policy: its patterns, its action for the
remote's host, its rules switched off).

Objects, not a diff: a diff leaves out what it does not print (merges' own changes, the
committer, extra headers, tag messages, objects that no commit holds, a file's name when it
is empty) and a filter of its lines can be fooled by content that looks like diff syntax.
So the gate lists the objects the push adds (`git rev-list --objects`, in git's quarantine)
and reads them whole (`git cat-file --batch`): commits and tags with every header and the
whole message, the names in trees, every blob in full, binary or not (a key in a binary
file is still a key).

Bounded: at most MAX_SCAN_BYTES of objects are read; a push that adds more is refused
unscanned (fail closed), as is one whose objects git cannot list or read."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import IO

from firewall import dlp
from firewall import policy as firewall_policy

from . import batch, config, upstream

MAX_SCAN_BYTES = 32 * 1024 * 1024
GIT_TIMEOUT = 120


class Unscannable(Exception):
    """The push cannot be scanned, so it is refused; `rule` names why in the refusal."""
    rule = "scan"


class TooLarge(Unscannable):
    rule = "size"


def pushed_text(repo: str, tips: list[str]) -> str:
    """The text of every object reachable from `tips` and from no ref the mirror already has
    (those are the upstream's, already there): one object after the other, a line apart."""
    if not tips:
        return ""
    return "\n".join(object_text(kind, body, oid_size) for kind, body, oid_size in new_objects(repo, tips))


def object_text(kind: str, body: bytes, oid_size: int) -> str:
    """What of an object can carry a secret: a tree's entry names, all of anything else."""
    if kind == "tree":
        return "\n".join(name.decode("utf-8", "replace") for name in tree_entry_names(body, oid_size))
    return body.decode("utf-8", "replace")


def tree_entry_names(body: bytes, oid_size: int) -> list[bytes]:
    """A raw tree is `<mode> <name>\\0<binary oid>` per entry."""
    names, pos = [], 0
    try:
        while pos < len(body):
            space = body.index(b" ", pos)
            end = body.index(b"\0", space)
            names.append(body[space + 1:end])
            pos = end + 1 + oid_size
    except ValueError:
        raise Unscannable("a pushed tree is malformed, so the push cannot be scanned") from None
    return names


def _git_env() -> dict[str, str]:
    # The hook's environment carries git's quarantine (the pushed objects): keep it.
    return {**upstream.local_env(), **{k: v for k, v in os.environ.items() if k.startswith("GIT_")}}


def new_objects(repo: str, tips: list[str]) -> Iterator[tuple[str, bytes, int]]:
    """(type, content, binary oid size) of each new object: `rev-list` names them straight
    into one `cat-file --batch`, so neither waits on the other and nothing is buffered whole."""
    env = _git_env()
    lister = subprocess.Popen(["git", "rev-list", "--objects", "--no-object-names", *tips, "--not", "--all"],
                              cwd=repo, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    assert lister.stdout is not None  # stdout=PIPE
    reader = subprocess.Popen(["git", "cat-file", "--batch"], cwd=repo, env=env, stdin=lister.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lister.stdout.close()  # the reader holds it now; rev-list sees a closed pipe if the reader dies
    assert reader.stdout is not None  # stdout=PIPE
    try:
        yield from _read_batch(reader.stdout)
        for proc, what in ((lister, "git rev-list could not list"), (reader, "git cat-file could not read")):
            if proc.wait(timeout=GIT_TIMEOUT) != 0:
                raise Unscannable(f"{what} the pushed objects, so they cannot be scanned")
    finally:
        for proc in (reader, lister):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _read_batch(stream: IO[bytes]) -> Iterator[tuple[str, bytes, int]]:
    """The objects of `cat-file --batch` output, at most MAX_SCAN_BYTES of content in all."""
    total = 0
    while True:
        try:
            # "<oid> missing" is no header: rev-list just listed it, so something is wrong
            header = batch.read_header(stream)
            if header is None:
                return
            oid, kind, size = header
            total += size
            if total > MAX_SCAN_BYTES:  # refused before reading it
                raise TooLarge(f"the push adds more than {MAX_SCAN_BYTES >> 20} MiB of objects, too much to scan")
            body = batch.read_content(stream, size, keep=size)
        except batch.BatchError as e:
            raise Unscannable(f"git cat-file could not read the pushed objects ({e}), so the push cannot be "
                              "scanned") from None
        yield kind, body, len(oid) // 2


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
