"""The controller's own files when they cannot be written, or come back damaged: a state dir on
a disk that fills up during a launch, and a state.json of the wrong shape. Either way the user
reads what went wrong and where, no Python traceback, and nothing of the bottle is left in the
engine or on disk once the run (or `down`) is over."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import INV, REPO, docker, ended, inv, labelled, missing, signalled_inv_env, unique, write_manifest

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """An 8 MiB tmpfs as XDG_STATE_HOME: the state and the stage dir live on a disk the test
    can fill. Unmounted afterwards, whatever happened."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        missing(f"cannot mount a tmpfs to fill: {done.stderr.strip()}")
    monkeypatch.setenv("XDG_STATE_HOME", str(mount))
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def remove_labelled(slug: str) -> None:
    """Whatever of this test's bottle is left, even where its `down` failed."""
    for name in labelled(slug):
        docker("rm", "-f", name, check=False)
        docker("network", "rm", name, check=False)


def fill(disk: Path) -> None:
    """Write zeros until the disk says it is full."""
    with open(disk / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 16))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_a_disk_that_fills_during_a_launch_is_said_and_rolled_back_to_the_end(small_disk, tmp_path, trust_bundle):
    """The disk fills once the networks exist. Every later write fails, the state's too: the
    launch once ended in "internal error: OSError", and its rollback stopped at its first
    removal (whose state write failed) with a Python traceback, leaving the networks behind."""
    slug = unique("dsk")
    manifest = write_manifest(tmp_path, {slug: "    prompt: t\n    network: {allow: [example.org]}"},
                              bundle=str(trust_bundle))
    inv("use", slug, "build", manifest=manifest)  # warm images: the launch goes straight on
    run = subprocess.Popen([INV, "use", slug, "launch"], cwd=REPO, env=signalled_inv_env(manifest), text=True,
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL)
    assert run.stderr is not None
    seen = []
    try:
        for line in run.stderr:
            seen.append(line)
            if line.startswith("✓ net"):  # the networks exist; the next step writes the state
                os.kill(run.pid, signal.SIGSTOP)  # held while the disk fills: every write after fails
                fill(small_disk)
                os.kill(run.pid, signal.SIGCONT)
                break
        seen.append(ended(run, "a launch on a full disk"))
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    err = "".join(seen)
    try:
        assert run.returncode == 1, err
        assert "Traceback" not in err and "internal error" not in err, err
        # Which write fails first depends on how far the launch got before it was held: the
        # state's (said by State.save) or a stage file's (said by the executor); both name the fix.
        below = small_disk / "bottle" / slug
        assert (f"error: could not write {below}/state.json: No space left on device\n    free space on that disk" in err
                or "error: the controller could not write its files" in err), err
        assert "free space on that disk" in err, err
        assert "rolled back network" in err and "rolled back everything this run created" in err, err
        assert "rollback:" not in err, err
        assert labelled(slug) == [], err
        assert not (small_disk / "bottle" / slug / "stage").exists(), err
    finally:
        (small_disk / "filler").unlink()
        inv("use", slug, "down", manifest=manifest, check=False)
        remove_labelled(slug)


@pytest.mark.parametrize("damage", ["[]", "null", '{"resources": [], "undo": "net"}',
                                    '{"undo": [{"kind": "network"}, 7], "host": 5}'])
def test_a_state_file_of_the_wrong_shape_is_ignored_with_a_warning_and_down_removes_all(tmp_path, state_home, damage):
    """Valid JSON that is not what bottle writes (a hand edit, a file cut short) stopped every
    command of that bottle, `down` and `status` included, with "internal error: AttributeError"
    and left its networks and stage dir behind; now the parts of the wrong shape are ignored,
    naming the file, and `down` finds the rest by label and path."""
    slug = unique("shp")
    manifest = write_manifest(tmp_path, {slug: "    prompt: t\n    network: {allow: [example.org]}"})
    inv("use", slug, "net", "ca", manifest=manifest)
    assert len(labelled(slug)) == 2
    state = state_home / "bottle" / slug / "state.json"
    state.write_text(damage)
    try:
        status = inv("status", "--json", manifest=manifest)
        assert "Traceback" not in status.stderr and "internal error" not in status.stderr, status.stderr
        assert f"warning: {state}: ignored " in status.stderr, status.stderr
        assert slug in json.loads(status.stdout)["bottles"]
        down = inv("use", slug, "down", manifest=manifest)
        assert "Traceback" not in down.stderr and "internal error" not in down.stderr, down.stderr
        assert f"warning: {state}: ignored " in down.stderr, down.stderr
        assert "removed the leftover stage dir" in down.stderr, down.stderr
        assert labelled(slug) == []
        assert not (state_home / "bottle" / slug).exists()
    finally:
        inv("use", slug, "down", manifest=manifest, check=False)
        remove_labelled(slug)
