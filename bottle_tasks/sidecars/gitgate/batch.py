"""Reading `git cat-file --batch` output: "<oid> <type> <size>\\n<content>\\n" per object.

Shared by the git gate's push scan (`scan.py`) and the controller's scan of a workspace's
history (`bottle_tasks.workspace.history`): both read what git prints as it prints it, and
both fail closed on anything that is not an object as git writes one ("<oid> missing", a
header longer than any real one, output that ends inside an object). Pure Python, no
imports of the gate's own: the controller imports it too.
"""
from __future__ import annotations

from typing import IO

MAX_HEADER = 200  # "<oid> <type> <size>\n": a longer line is no header
KINDS = ("commit", "tree", "blob", "tag")
SKIP_PIECE = 1 << 20  # what is read past at a time of content that is not kept


class BatchError(ValueError):
    """cat-file's output is not an object as git writes one."""


def read_header(stream: IO[bytes]) -> tuple[str, str, int] | None:
    """(oid, type, size) of the next object; None at the end of the output."""
    line = stream.readline(MAX_HEADER)
    if not line:
        return None
    parts = line.decode("ascii", "replace").split()
    if len(parts) != 3 or parts[1] not in KINDS or not parts[2].isdigit():
        raise BatchError(f"not an object header: {line.decode(errors='replace').strip()[:MAX_HEADER]}")
    return parts[0], parts[1], int(parts[2])


def read_content(stream: IO[bytes], size: int, keep: int) -> bytes:
    """The object's first `keep` bytes (the rest is read past, never held), and the newline
    that ends it."""
    wanted = min(size, keep)
    kept = stream.read(wanted)
    if len(kept) < wanted:
        raise BatchError("the output ended inside an object")
    skip = size - wanted
    while skip > 0:
        read = len(stream.read(min(skip, SKIP_PIECE)))
        if not read:
            raise BatchError("the output ended inside an object")
        skip -= read
    if stream.read(1) != b"\n":
        raise BatchError("an object's content is not followed by a newline")
    return kept
