"""The operator's secrets on the Docker host: what `down` leaves of them. The stage dir holds
the bottle's CA private keys and the secrets its sidecars inject (secrets.json); it is at a
path fixed by the Docker host and the bottle's name, so `down` removes it whatever the state
file still says (a corrupt or lost state.json must not leave key material behind)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import inv, unique, write_manifest
from test_remote import ssh  # noqa: F401 - the loopback sshd fixture

pytestmark = pytest.mark.usefixtures("engine")


@pytest.mark.parametrize("damage", ["corrupt", "deleted"])
def test_down_removes_the_stage_dir_the_state_no_longer_knows(tmp_path, state_home, damage):
    slug = unique("sec")
    manifest = write_manifest(tmp_path, {slug: "    prompt: t\n    network: {allow: [example.org]}"})
    inv("use", slug, "ca", manifest=manifest)
    stage = state_home / "bottle" / slug / "stage"
    keys = [stage / role / "mitmproxy-ca.pem" for role in ("firewall", "egress")]
    assert all(b"PRIVATE KEY" in key.read_bytes() for key in keys)  # the CA keys are on disk
    state = state_home / "bottle" / slug / "state.json"
    if damage == "corrupt":
        state.write_text("{ not json")
    else:
        state.unlink()
    inv("use", slug, "down", manifest=manifest)
    assert not stage.exists(), sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
    assert not (state_home / "bottle" / slug).exists()


def test_down_removes_a_remote_stage_dir_the_state_no_longer_knows(ssh, tmp_path, state_home):  # noqa: F811
    """The same over SSH: the remote stage dir is found by its path on the Docker host alone."""
    remote, env = ssh
    slug = unique("rsec")
    manifest = write_manifest(tmp_path, {slug: "    prompt: t\n    network: {allow: [example.org]}"})
    inv("use", slug, "--on", remote, "ca", manifest=manifest, env=env)
    state = state_home / "bottle" / slug / "state.json"
    stage = Path(json.loads(state.read_text())["resources"]["stage"])  # the loopback host is this machine
    assert b"PRIVATE KEY" in (stage / "firewall" / "mitmproxy-ca.pem").read_bytes()
    state.unlink()
    inv("use", slug, "--on", remote, "down", manifest=manifest, env=env)
    assert not stage.exists(), sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
