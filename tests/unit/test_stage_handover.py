"""The operator's secrets on the controller: handing a stage dir over to the sidecars' user
(`sidecar.hand_over`, as root) changes the stage files' owner and nothing else."""
from __future__ import annotations

import os

from helpers import missing
from invoke import Context

from bottle_tasks.sidecar import UNPRIVILEGED
from bottle_tasks.target import LocalTarget


def test_handing_a_stage_dir_over_never_follows_a_link_out_of_it(tmp_path):
    if os.getuid() != 0:
        missing("hand_over changes owners only when bottle runs as root")
    stage = tmp_path / "stage" / "egress"
    stage.mkdir(parents=True)
    (stage / "secrets.json").write_text("{}")
    outside = tmp_path / "root-only"  # stands in for /etc/shadow, a key, any root file
    outside.write_text("root's")
    (stage / "planted").symlink_to(outside)
    (stage / "planted-dir").symlink_to(tmp_path)
    LocalTarget(Context(), tmp_path).chown_tree(str(stage), UNPRIVILEGED, UNPRIVILEGED)
    assert os.stat(stage / "secrets.json").st_uid == UNPRIVILEGED
    assert (os.stat(outside).st_uid, os.stat(tmp_path).st_uid) == (0, 0)
