"""Ctrl-C at any point of `inv launch` leaves nothing behind, and a second Ctrl-C during the
rollback does not leave half of it. SIGINT goes to the whole process group, as a terminal
sends it, so the docker commands in flight are interrupted too."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from helpers import (
    INV,
    REMOVALS,
    REPO,
    docker,
    ended,
    interrupted_at_event,
    inv,
    labelled,
    signalled_inv_env,
    unique,
    write_manifest,
)

from bottle_tasks.manifest import load
from bottle_tasks.plan import build_plan

pytestmark = pytest.mark.usefixtures("engine")

# Points of a warm launch, by the engine's events (17 here): the two networks created, the
# firewall's create (ca done), the agent's, the starts, provisioning's execs, their ends (the
# readiness wait follows), and past the end.
EVENTS = (1, 2, 3, 5, 8, 11, 14, 17)


@pytest.fixture
def bottle(tmp_path, state_home, trust_bundle):
    slug = unique("int")
    manifest = write_manifest(tmp_path, {slug: "    prompt: test\n    network: {allow: [example.org]}"},
                              bundle=str(trust_bundle))
    inv("use", slug, "build", manifest=manifest)  # warm images: the launches below start at once
    yield slug, manifest
    inv("use", slug, "down", manifest=manifest, check=False)
    for name in labelled(slug):
        docker("rm", "-f", name, check=False)
        docker("network", "rm", name, check=False)


@pytest.mark.parametrize("twice", [False, True], ids=["once", "twice"])
def test_ctrl_c_at_any_point_of_a_launch_leaves_nothing(bottle, twice):
    slug, manifest = bottle
    outcomes = []
    for nth in EVENTS:
        code, err, seen = interrupted_at_event(["use", slug, "launch"], manifest, slug, nth, twice=twice)
        assert "Traceback" not in err, err
        if code == 0:  # finished before the signal: a whole bottle, then taken down
            outcomes.append((nth, "finished"))
            inv("use", slug, "down", manifest=manifest)
        else:
            assert code == 130 and "interrupted" in err, f"exit {code} after the events {seen}:\n{err}"
            outcomes.append((nth, code))
        # A create the Ctrl-C cut short may still be finishing in the engine: it shows by now.
        time.sleep(0.5)
        assert labelled(slug) == [], f"left behind after Ctrl-C at the event {nth}: {labelled(slug)}\n{err}"
    print(f"Ctrl-C {'twice' if twice else 'once'} into a launch, at the nth event:", outcomes)
    assert outcomes[0] == (1, 130), f"a Ctrl-C as the first network was made did not stop the launch: {outcomes}"


def test_sigterm_at_any_point_of_a_launch_leaves_nothing(bottle):
    """SIGTERM (and again, as `timeout` or a CI runner may send it) to `inv` alone, not to the
    docker commands in flight: the launch stops once the command in flight is done, and rolls
    back, as after a Ctrl-C."""
    slug, manifest = bottle
    outcomes = []
    for nth in EVENTS:
        code, err, seen = interrupted_at_event(["use", slug, "launch"], manifest, slug, nth, twice=True,
                                               signum=signal.SIGTERM)
        assert "Traceback" not in err, err
        if code == 0:
            outcomes.append((nth, "finished"))
            inv("use", slug, "down", manifest=manifest)
        else:
            assert code == 143 and "stopped by SIGTERM" in err, f"exit {code} after the events {seen}:\n{err}"
            outcomes.append((nth, code))
        assert labelled(slug) == [], f"left behind after SIGTERM at the event {nth}: {labelled(slug)}\n{err}"
    print("SIGTERM into a launch, at the nth event:", outcomes)
    assert outcomes[0] == (1, 143), f"a SIGTERM as the first network was made did not stop the launch: {outcomes}"


def test_ctrl_c_again_and_again_during_the_rollback_leaves_nothing(bottle):
    """The second Ctrl-C surely lands inside the rollback: sent as soon as the rollback reports
    its first removal, and again while the rest runs. (The docker CLI acts on a SIGINT even
    when it was ignored at exec: the rollback's commands must be out of the group's reach.)"""
    slug, manifest = bottle
    env = dict(os.environ, INVOKE_BOTTLE_MANIFEST=str(manifest))
    run = subprocess.Popen([INV, "use", slug, "launch"], cwd=REPO, env=env, text=True, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert run.stderr is not None
    seen = []
    try:
        for marker in ("starting (proxy", "rolled back"):  # the agent is being made; the rollback began
            for line in run.stderr:
                seen.append(line)
                if marker in line:
                    break
            for _ in range(1 if marker.startswith("starting") else 6):
                if run.poll() is None:
                    os.killpg(run.pid, signal.SIGINT)
                    time.sleep(0.03)
        seen.append(run.stderr.read())
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    err = "".join(seen)
    assert run.returncode == 130 and "rolled back container" in err, err
    assert "Traceback" not in err and "rollback:" not in err, err  # no removal failed
    assert labelled(slug) == [], err


def test_ctrl_c_into_down_says_so_and_down_again_finishes(bottle):
    """A Ctrl-C stops `down` where it is, says so (not a confusing "removal already in
    progress" from asking the engine again), and the next `down` removes the rest. The Ctrl-C
    comes on the engine's word that `down` has begun (its first, fourth, seventh container
    removal event), not after a guessed delay that a slower machine's start-up outlasts."""
    slug, manifest = bottle
    outcomes = []
    for nth in (1, 4, 7):
        inv("use", slug, "launch", manifest=manifest)
        code, err, seen = interrupted_at_event(["use", slug, "down"], manifest, slug, nth, REMOVALS)
        assert "Traceback" not in err and "already in progress" not in err, err
        if code == 130:  # it says how to finish
            assert "interrupted" in err and ("✗ down" not in err or "down` again" in err), err
        else:  # done before the signal (fewer events than that)
            assert code == 0, f"exit {code} after the events {seen}:\n{err}"
        outcomes.append((nth, code))
        inv("use", slug, "down", manifest=manifest)
        assert labelled(slug) == [], f"left behind after a Ctrl-C'd down and another down: {labelled(slug)}"
    print("Ctrl-C into down, at the nth container event:", outcomes)
    assert outcomes[0] == (1, 130), f"a Ctrl-C at down's first removal did not stop it: {outcomes}"


def test_ctrl_c_with_keep_keeps_only_what_the_state_knows(bottle):
    """--keep: what was created stays for debugging, and all of it is recorded, so a later
    `down` takes exactly it away (not through the label sweep alone)."""
    slug, manifest = bottle
    # At the first container's create: past net and ca, something in flight.
    code, err, _ = interrupted_at_event(["use", slug, "--keep", "launch"], manifest, slug, 1, ("container create",))
    assert "Traceback" not in err, err
    kept = labelled(slug)
    assert kept, f"--keep kept nothing ({code}):\n{err}"
    state = inv("use", slug, "status", "--json", manifest=manifest).stdout
    unknown = [name for name in kept if name not in state]
    assert unknown == [], f"kept but not in the bottle's state: {unknown}"
    inv("use", slug, "down", manifest=manifest)
    assert labelled(slug) == []


def test_ctrl_c_during_an_image_build_leaves_no_image_context_or_resource(tmp_path, state_home, trust_bundle):
    slug = unique("intb")
    # A bundle no image was built with: every image of this bottle has a new tag to build.
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(trust_bundle.read_text() + f"\n# interrupt test {slug}\n")
    manifest = write_manifest(tmp_path, {slug: "    prompt: test\n    network: {allow: [example.org]}"},
                              bundle=str(bundle))
    loaded = load(str(manifest))
    tags = [spec.tag for spec in build_plan(slug, loaded, loaded.agents[slug]).images.values()]
    build_tmp = tmp_path / "tmp"
    build_tmp.mkdir()
    env = signalled_inv_env(manifest, {"TMPDIR": str(build_tmp)})
    run = subprocess.Popen([INV, "use", slug, "launch"], cwd=REPO, env=env, text=True, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(build_tmp.glob("bottle-build-*")) and time.monotonic() < deadline:
            time.sleep(0.2)  # the build contexts appear: the builds are under way
        assert time.monotonic() < deadline, "no image build started"
        time.sleep(3)
        os.killpg(run.pid, signal.SIGINT)
        err = ended(run, "`inv launch` Ctrl-C'd during its image builds", timeout=180)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        inv("use", slug, "down", manifest=manifest, check=False)
    assert run.returncode != 0 and "Traceback" not in err, err
    assert labelled(slug) == []
    assert [tag for tag in tags if docker("image", "inspect", tag, check=False).returncode == 0] == []
    assert list(build_tmp.iterdir()) == [], "build contexts left behind"
