"""Paths that lead out of the workspace (no Docker): git lists what `.git/index` holds, and
a folder can be a link. Nothing behind either may be selected or packed; what is left out
is said. (The same on the real engine: tests/engine/test_workspace_escape.py.)"""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from helpers import forged_index, git_output

from bottle_tasks.workspace import credentials, image, pack
from bottle_tasks.workspace.selection import select

OPERATORS = "OPERATOR-SECRET-7f3e\n"


@pytest.fixture
def layout(tmp_path) -> tuple[Path, Path]:
    """(project, the operator's folder next to it, holding `settings` and `history`)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings").write_text(OPERATORS)
    (home / "history").write_text(OPERATORS)
    root = tmp_path / "project"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "settings").write_text("tracked\n")
    (root / "main.py").write_text("print('hi')\n")
    git_output(root, "init", "-q")
    git_output(root, "add", ".")
    git_output(root, "commit", "-qm", "init")
    return root, home


def packed(selection, out: Path) -> tuple[dict[str, bytes], list]:
    """name -> content of every file in the build context, and what packing left out."""
    left = pack.write_context(selection, "FROM scratch\n", out, credentials.ContentScan())
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return files, left


def test_a_tracked_file_behind_a_folder_that_became_a_link_stays_out(layout, tmp_path):
    root, home = layout
    (root / "conf" / "settings").unlink()
    (root / "conf").rmdir()
    (root / "conf").symlink_to(home)  # the index still lists conf/settings
    chosen = select(root)
    assert {e.rel: e.kind for e in chosen.entries if e.rel.startswith("conf")} == {"conf": "link"}
    assert {i.rel: i.reason for i in chosen.left_out} == {
        "conf/settings": "inside a link to a folder (the link is copied, not what it points at)"}
    files, _ = packed(chosen, tmp_path / "ctx.tar")
    assert OPERATORS.encode() not in files.values()


def test_index_paths_leading_out_are_neither_selected_nor_packed(layout, tmp_path):
    root, home = layout
    forged_index(root, ["main.py", str(home / "history"), "../home/settings", "conf/../../home/history"])
    chosen = select(root)
    # conf/settings: no longer in the index, listed as an untracked file of the project
    assert {e.rel for e in chosen.entries if not e.rel.startswith(".git")} == {"main.py", "conf", "conf/settings"}
    assert {i.rel for i in chosen.left_out} == {str(home / "history"), "../home/settings", "conf/../../home/history"}
    files, _ = packed(chosen, tmp_path / "ctx.tar")
    assert OPERATORS.encode() not in files.values()
    assert all(".." not in name.split("/") and "//" not in name for name in files)


def test_a_folder_swapped_for_a_link_after_selection_is_not_followed(layout, tmp_path):
    root, home = layout
    chosen = select(root)
    assert "conf/settings" in {e.rel for e in chosen.entries}
    (root / "conf" / "settings").unlink()
    (root / "conf").rmdir()
    (root / "conf").symlink_to(home)  # between the selection and the copy
    files, left = packed(chosen, tmp_path / "ctx.tar")
    assert OPERATORS.encode() not in files.values()
    assert "workspace/conf/settings" not in files
    assert [i.rel for i in left] == ["conf/settings"]


def test_a_file_name_cannot_print_a_line_of_its_own(tmp_path, capsys):
    root = tmp_path / "folder"
    root.mkdir()
    (root / ".env\nworkspace copied: 0 files").write_text("x\n")
    chosen = select(root)
    image.report(chosen, list(chosen.left_out), reused=False)
    said = capsys.readouterr().err.splitlines()
    assert [line for line in said if line.startswith("workspace")] == []  # every line of ours is indented
    assert any(".env\\nworkspace copied: 0 files" in line for line in said)
