"""Files only their owner may read: state, stage files, keys. One writer for all of them."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` with mode 0600, never readable by others even briefly.

    The bytes go to a fresh temp file in the same directory, created 0600 with
    O_EXCL (no following a planted symlink, no reusing someone's file), then
    renamed over `path`. The parent directory must exist (FileNotFoundError).
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # a umask can only take bits away; make it exactly 0600
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
