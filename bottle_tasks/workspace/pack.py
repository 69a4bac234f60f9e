"""Pack the selected workspace into a build context: one tar (Dockerfile + workspace/),
fed to `docker build -` on stdin, so the files are read once and never copied to a
temporary tree first.

While packing, each file's head goes through the content scan (credentials.ContentScan):
a file that holds a secret is left out here. Files are opened following no link, their
folders' included (`_open_beneath`), so a file or folder swapped for a link after it was
selected is refused, not followed; links go in as links
(their target text only). Modes, exec bits included, go in as they are; owners are set
by the Dockerfile's `COPY --chown`.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
import time
from pathlib import Path

from .. import console
from ..errors import BottleError
from .credentials import MAX_SCAN_BYTES, ContentScan
from .selection import GIT_CONFIGS, LeftOut, Selection

CHUNK = 1 << 20
LARGE = 64 << 20  # above this many bytes a copy shows progress


class _Chain(io.RawIOBase):
    """The head already read for the scan, then the rest of the open file."""

    def __init__(self, head: bytes, handle, advance):
        self._head, self._handle, self._advance = head, handle, advance

    def read(self, size: int = -1) -> bytes:
        # Full reads: tarfile takes a short read for the end of the file.
        head, self._head = (self._head, b"") if size < 0 or size >= len(self._head) else \
            (self._head[:size], self._head[size:])
        rest = self._handle.read(-1 if size < 0 else size - len(head)) if size < 0 or len(head) < size else b""
        data = head + rest
        self._advance(len(data))
        return data


class Progress:
    """Bytes packed so far: a bar on a terminal, a plain line per quarter otherwise."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done = total, label, 0
        self._shown = 0
        self._bar = None
        if total >= LARGE and console.err.is_terminal:
            from rich.progress import BarColumn, DownloadColumn, TextColumn
            from rich.progress import Progress as Bar
            self._bar = Bar(TextColumn(f"  {label}"), BarColumn(), DownloadColumn(), console=console.err,
                            transient=True)
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar:
            self._bar.update(self._task, completed=self.done)
        elif self.total >= LARGE:
            quarter = min(4, self.done * 4 // max(1, self.total))
            if quarter > self._shown:
                self._shown = quarter
                console.note(f"{self.label}: {self.done / 1e6:.0f} of {self.total / 1e6:.0f} MB")

    def close(self) -> None:
        if self._bar:
            self._bar.stop()


def write_context(selection: Selection, dockerfile: str, out: Path, scan: ContentScan) -> list[LeftOut]:
    """Write the build context tar at `out`; return what the content scan left out."""
    left: list[LeftOut] = []
    progress = Progress(selection.size, f"copying the workspace ({selection.files} files)")
    try:
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "Dockerfile", dockerfile.encode(), 0o644)
            _add_dir(tar, "workspace", 0o755, time.time())
            for entry in selection.entries:
                name = f"workspace/{entry.rel}"
                if entry.kind == "dir":
                    _add_dir(tar, name, entry.mode, time.time())
                elif entry.kind == "link":
                    info = _info(name, tarfile.SYMTYPE, 0o777, entry.mtime_ns / 1e9)
                    info.linkname = entry.target
                    tar.addfile(info)
                else:
                    reason = _add_file(tar, selection.root, name, entry, scan, progress)
                    if reason:
                        left.append(LeftOut(entry.rel, reason))
    finally:
        progress.close()
    return left


def _add_file(tar, root: Path, name: str, entry, scan: ContentScan, progress: Progress) -> str | None:
    try:
        fd = _open_beneath(root, entry.rel)
    except OSError as exc:
        progress.advance(entry.size)
        return "changed into a link while copying" if exc.errno == errno.ELOOP else f"unreadable ({exc.strerror})"
    with os.fdopen(fd, "rb", buffering=CHUNK) as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            progress.advance(entry.size)
            return "not a regular file any more"
        head = handle.read(min(st.st_size, MAX_SCAN_BYTES)) if entry.scan else b""
        reason = scan.finding(head, git_config=entry.rel in GIT_CONFIGS) if head else None
        if reason:
            progress.advance(entry.size)
            return reason
        info = _info(name, tarfile.REGTYPE, stat.S_IMODE(st.st_mode), st.st_mtime)
        info.size = st.st_size
        try:
            tar.addfile(info, _Chain(head, handle, progress.advance))
        except OSError as exc:  # tarfile: "unexpected end of data"
            raise BottleError(f"workspace file {entry.rel} changed while it was being copied ({exc})",
                              "launch again once nothing is writing to the workspace") from None
    return None


def _open_beneath(root: Path, rel: str) -> int:
    """`root/rel` opened for reading without following a link anywhere on the way, the
    folders included (O_NOFOLLOW alone guards only the last name): a folder swapped for a
    link to `~/.ssh` after the selection fails with ELOOP instead of leading out."""
    *folders, name = rel.split("/")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise OSError(errno.EINVAL, "not a path below the workspace")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for folder in folders:
            below = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = below
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)


def _info(name: str, kind: bytes, mode: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    # Whole seconds: a float makes tarfile open with a PAX header, and the docker CLI tells a
    # tar context on stdin from a Dockerfile by parsing the first 512 bytes as a tar header.
    info.type, info.mode, info.mtime = kind, mode, int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_dir(tar, name: str, mode: int, mtime: float) -> None:
    tar.addfile(_info(name, tarfile.DIRTYPE, mode, mtime))


def _add_bytes(tar, name: str, data: bytes, mode: int) -> None:
    info = _info(name, tarfile.REGTYPE, mode, time.time())
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
