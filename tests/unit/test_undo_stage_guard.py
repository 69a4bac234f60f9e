"""Undoing a `stage` entry removes a whole tree (rm -rf): only this bottle's own stage dir,
whatever the state file says. A planted or hand-edited entry such as
"<stage root>/x/../../.." starts with the stage root by name and is the operator's home."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from bottle_tasks import undo
from bottle_tasks.errors import BottleError
from bottle_tasks.state import UndoAction


def bottle(removed: list[str], forgotten: list[UndoAction]):
    target = SimpleNamespace(stage_root="/home/op/.local/state/bottle", remove_tree=removed.append)
    target.stage_dir = lambda slug: f"{target.stage_root}/{slug}/stage"
    state = SimpleNamespace(path="/home/op/.local/state/bottle/b1/state.json", forget=forgotten.append)
    return SimpleNamespace(slug="b1", target=target, state=state)


@pytest.mark.parametrize("name", ["/home/op/.local/state/bottle/b1/stage/../../../..",
                                  "/home/op/.local/state/bottle/other/stage", "/home/op", "/"])
def test_a_stage_entry_other_than_the_bottles_own_is_refused(name):
    removed, forgotten = [], []
    with pytest.raises(BottleError) as refused:
        undo.undo(bottle(removed, forgotten), UndoAction("stage", name, "ca"))
    assert "refusing to remove" in str(refused.value) and removed == [] and forgotten == []


def test_the_bottles_own_stage_dir_is_removed():
    removed, forgotten = [], []
    own = UndoAction("stage", "/home/op/.local/state/bottle/b1/stage", "ca")
    undo.undo(bottle(removed, forgotten), own)
    assert removed == [own.name] and forgotten == [own]
