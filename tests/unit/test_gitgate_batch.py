"""Reading `git cat-file --batch` output (gitgate/batch.py), shared by the git gate's push
scan and the workspace's history scan: real git's output, and what is not an object as git
writes one."""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from bottle_tasks.sidecars.gitgate import batch


def objects(data: bytes, keep: int) -> list[tuple[str, str, bytes]]:
    stream, out = io.BytesIO(data), []
    while (header := batch.read_header(stream)) is not None:
        oid, kind, size = header
        out.append((oid, kind, batch.read_content(stream, size, keep)))
    return out


def test_real_gits_output_is_read_object_by_object(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b.invalid",
           "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b.invalid"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(tmp_path), *args], env=env, check=True, capture_output=True)

    run("init", "-q")
    (tmp_path / "big").write_bytes(b"\n" * 3000 + b"end")
    (tmp_path / "small").write_bytes(b"hello\n")
    run("add", ".")
    run("commit", "-qm", "message\n\nbody")
    out = run("cat-file", "--batch-all-objects", "--batch").stdout
    found = {kind: [] for kind in batch.KINDS}
    for _oid, kind, content in objects(out, keep=1000):
        found[kind].append(content)
    assert sorted(found["blob"]) == [b"\n" * 1000, b"hello\n"]   # the big one kept to 1000 bytes
    assert len(found["tree"]) == 1 and found["commit"][0].endswith(b"message\n\nbody\n")


@pytest.mark.parametrize("data", [
    b"0123abcd missing\n",                                   # what cat-file says of an object it lacks
    b"0123abcd blob\n",
    b"0123abcd file 3\nabc\n",                               # no such type
    b"0123abcd blob -3\n",
    b"0123abcd blob 3 extra\nabc\n",
    b"0123abcd blob " + b"9" * 300 + b"\n",                  # longer than any header
])
def test_what_is_no_header_is_refused(data):
    with pytest.raises(batch.BatchError):
        objects(data, keep=10)


@pytest.mark.parametrize("data, keep", [
    (b"0123abcd blob 10\nabc", 100),                          # ended inside the content
    (b"0123abcd blob 10\nabcdefghij", 100),                   # without the newline after it
    (b"0123abcd blob 10\nabcdefghijX", 100),
    (b"0123abcd blob 10\nabcdef", 3),                          # ended in the part read past
])
def test_output_that_ends_inside_an_object_is_refused(data, keep):
    with pytest.raises(batch.BatchError):
        objects(data, keep=keep)


def test_an_empty_object_and_the_end_of_the_output():
    assert objects(b"0123abcd blob 0\n\n0123abce tag 2\nab\n", keep=10) == [
        ("0123abcd", "blob", b""), ("0123abce", "tag", b"ab")]
    assert objects(b"", keep=10) == []
