"""`down --all` on the controller's side: every stage dir on the Docker host goes (a bottle whose
state.json was lost kept its CA keys and secrets there before), the states of the bottles on
that host go, another host's stay; and a bottle another run is changing stops it before
anything is removed. The engine's part (`sweep`, every labelled container and network) is not
run here: on a developer's machine it would take their own bottles."""
from __future__ import annotations

import fcntl
import json
import os

import pytest
from invoke import Config, Context

from bottle_tasks import run
from bottle_tasks.errors import BottleError
from bottle_tasks.steps import down
from bottle_tasks.target import LocalTarget


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    swept = []
    monkeypatch.setattr(down, "sweep", lambda target, slug: swept.append(slug) or [])

    def no_engine(self, argv, **_):  # nothing here may reach the engine: it holds other bottles
        raise AssertionError(f"an engine command in a test of down --all: {argv}")

    monkeypatch.setattr(LocalTarget, "run", no_engine)
    run.begin()
    yield tmp_path / "bottle", swept
    run.begin()  # the locks this test took


def bottle_dir(root, slug: str, state: dict | None, stage: bool = True):
    folder = root / slug
    (folder / "stage").mkdir(parents=True) if stage else folder.mkdir(parents=True)
    if stage:
        (folder / "stage" / "ca-key.pem").write_text("key")
    if state is not None:
        (folder / "state.json").write_text(json.dumps({"slug": slug, **state}))
    return folder


def context() -> Context:
    return Context(Config(overrides={"bottle": {"remote": None}}))


def test_every_stage_dir_and_this_hosts_states_go_another_hosts_stay(root):
    root, swept = root
    known = bottle_dir(root, "known", {"host": "local"})
    lost = bottle_dir(root, "lost", None)  # its state.json is gone; its keys are not
    elsewhere = bottle_dir(root, "elsewhere", {"host": "ssh://me@other"}, stage=False)
    (root / "locks").mkdir()  # not a bottle
    down.tear_down_all(context(), purge=False)
    assert swept == [None]
    assert not (known / "stage").exists() and not (known / "state.json").exists()
    assert not (lost / "stage").exists()
    assert (elsewhere / "state.json").exists()


def test_a_stage_dir_that_is_a_link_is_not_followed(root, tmp_path):
    root, _ = root
    outside = tmp_path / "outside"
    (outside / "stage").mkdir(parents=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / "planted").mkdir()
    (root / "planted" / "stage").symlink_to(outside / "stage")
    down.tear_down_all(context(), purge=False)
    assert (outside / "stage").is_dir()


def test_a_bottle_another_run_is_changing_stops_it_before_anything_is_removed(root):
    root, swept = root
    busy = bottle_dir(root, "busy", {"host": "local"})
    lost = bottle_dir(root, "lost", None)
    (root / "locks").mkdir()
    held = os.open(root / "locks" / "busy.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)  # another open file: a conflict, as another process's would be
    os.write(held, b"4242")
    try:
        with pytest.raises(BottleError, match="bottle busy is busy.*pid 4242"):
            down.tear_down_all(context(), purge=False)
    finally:
        os.close(held)
    assert swept == []
    assert (busy / "stage").exists() and (busy / "state.json").exists() and (lost / "stage").exists()
