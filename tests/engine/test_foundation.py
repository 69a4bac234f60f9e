"""The foundation against the real Docker Engine: net, ca, down, status, rollback, build cache."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from helpers import docker, inv, labelled, unique, write_manifest

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def bottle(tmp_path, state_home):
    """A fresh agent name and manifest; whatever the test leaves is swept at the end."""
    slug = unique()
    manifest = write_manifest(tmp_path, {slug: "    prompt: test\n    network: {allow: [example.org]}"})
    yield slug, manifest
    inv("use", slug, "down", manifest=manifest, check=False)
    for name in labelled(slug):
        docker("rm", "-f", name, check=False)
        docker("network", "rm", name, check=False)


def test_net_ca_then_down_leaves_nothing(bottle, state_home):
    slug, manifest = bottle
    inv("use", slug, "net", "ca", manifest=manifest)
    names = set(labelled(slug))
    assert names == {f"bottle-{slug}-net-internal", f"bottle-{slug}-net-egress"}
    internal = json.loads(docker("network", "inspect", f"bottle-{slug}-net-internal").stdout)[0]
    assert internal["Internal"] is True
    assert internal["Labels"]["bottle.role"] == "net-internal"

    state_file = state_home / "bottle" / slug / "state.json"
    state = json.loads(state_file.read_text())
    assert state["cidr"]["net-internal"] == internal["IPAM"]["Config"][0]["Subnet"]
    stage = state_home / "bottle" / slug / "stage"
    assert stat.S_IMODE(stage.stat().st_mode) == 0o700
    keys = sorted(stage.rglob("mitmproxy-ca.pem"))
    assert len(keys) == 2
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600

    inv("use", slug, "down", manifest=manifest)
    assert labelled(slug) == []
    assert not stage.exists() and not state_file.exists()
    assert not (state_home / "bottle" / slug).exists()


def test_each_step_alone_and_twice_is_harmless(bottle, state_home):
    slug, manifest = bottle
    inv("use", slug, "net", manifest=manifest)
    first = set(labelled(slug))
    ca_key = state_home / "bottle" / slug / "stage" / "firewall" / "mitmproxy-ca.pem"
    inv("use", slug, "ca", manifest=manifest)          # a later command, against persisted state
    minted = ca_key.read_bytes()
    out = inv("use", slug, "net", "ca", manifest=manifest)  # again: same resources, no error
    assert set(labelled(slug)) == first
    assert ca_key.read_bytes() == minted, "a valid CA must be kept, not re-minted"
    assert "CAs present and valid" in out.stderr
    inv("use", slug, "down", manifest=manifest)
    inv("use", slug, "down", manifest=manifest)        # down is idempotent too
    assert labelled(slug) == []


def test_failed_run_rolls_back_what_it_created(tmp_path, state_home):
    slug = unique()
    # net succeeds, then build fails: its base image does not exist.
    manifest = write_manifest(tmp_path, {slug: "    prompt: test"},
                              extra="images: {base: 'bottle-test/missing:none', proxy_base: 'bottle-test/missing:none'}\n")
    proc = inv("use", slug, "net", "build", manifest=manifest, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "base image bottle-test/missing:none" in proc.stderr and "make engine" in proc.stderr
    assert "✗ build" in proc.stderr and "rolled back network" in proc.stderr
    assert labelled(slug) == []

    # --keep leaves it for debugging; down removes it afterwards.
    proc = inv("use", slug, "--keep", "net", "build", manifest=manifest, check=False)
    assert proc.returncode != 0 and "kept for debugging" in proc.stderr
    assert len(labelled(slug)) == 2
    inv("use", slug, "down", manifest=manifest)
    assert labelled(slug) == []


def test_dry_run_prints_commands_and_creates_nothing(bottle, state_home):
    slug, manifest = bottle
    proc = inv("--dry", "use", slug, "net", manifest=manifest)
    assert "docker network create --driver bridge --internal" in proc.stderr
    assert f"bottle-{slug}-net-internal" in proc.stderr
    assert labelled(slug) == []
    assert not (state_home / "bottle" / slug).exists()


def test_status_finds_orphans_and_down_removes_only_its_own(bottle, state_home):
    slug, manifest = bottle
    inv("use", slug, "net", manifest=manifest)
    orphan, users = unique("orphan"), unique("users")
    docker("network", "create", "--label", f"bottle.slug={orphan}", "--label", "bottle.role=net-egress",
           "--label", "bottle.managed=1", f"bottle-{orphan}-net-egress")
    # a bottle the tests did not create (the user's own, running beside `make test`)
    docker("network", "create", "--label", f"bottle.slug={users}", "--label", "bottle.role=net-internal",
           "--label", "bottle.managed=1", f"bottle-{users}-net-internal")
    try:
        report = json.loads(inv("status", "--json", manifest=manifest).stdout)
        assert {n["role"] for n in report["bottles"][slug]["networks"]} == {"net-internal", "net-egress"}
        assert any(o["name"] == f"bottle-{orphan}-net-egress" for o in report["orphans"])
        table = inv("status", manifest=manifest).stdout
        assert f"bottle-{slug}-net-internal" in table and "orphans" in table
        inv("use", slug, "down", manifest=manifest)
        inv("use", orphan, "down", manifest=manifest)  # no state: found by its label alone
        assert labelled(slug) == [] and labelled(orphan) == []
        assert labelled(users) == [f"bottle-{users}-net-internal"], "down touched a bottle it did not own"
    finally:
        docker("network", "rm", f"bottle-{users}-net-internal", check=False)
        docker("network", "rm", f"bottle-{orphan}-net-egress", check=False)


def test_down_sweeps_what_its_log_lost_and_reports_only_that(bottle, state_home):
    """`down` lists the bottle's labelled resources while it undoes its log: what the log held is
    removed once and not reported as found by label; what only the labels knew goes too."""
    slug, manifest = bottle
    inv("use", slug, "net", manifest=manifest)
    labels = ["--label", f"bottle.slug={slug}", "--label", "bottle.managed=1"]
    stray_net = f"bottle-{slug}-net-stray"
    docker("network", "create", *labels, "--label", "bottle.role=net-stray", stray_net)
    # a container only the labels know, on a network the log holds (it must not block that network)
    stray = docker("create", *labels, "--label", "bottle.role=stray", "--name", f"bottle-{slug}-stray",
                   "--network", f"bottle-{slug}-net-internal", "debian:bookworm-slim", "sleep", "600").stdout.strip()
    docker("start", stray)
    out = inv("use", slug, "down", manifest=manifest)
    text = out.stdout + out.stderr
    assert f"removed leftover {stray_net}" in text and f"removed leftover bottle-{slug}-stray" in text
    assert f"leftover bottle-{slug}-net-internal" not in text and f"leftover bottle-{slug}-net-egress" not in text
    assert "removed 4 resource(s)" in text
    assert labelled(slug) == []


def test_a_container_from_a_bottle_image_is_not_an_orphan(bottle, state_home):
    slug, manifest = bottle
    inv("use", slug, "build", manifest=manifest)
    image = docker("image", "ls", "--filter", "label=bottle.image=firewall", "--format", "{{.Repository}}:{{.Tag}}"
                   ).stdout.split()[0]
    name = unique("someone")
    docker("run", "-d", "--name", name, "--label", "bottle.test=1", "--entrypoint", "sleep", image, "60")
    try:
        report = json.loads(inv("status", "--json", manifest=manifest).stdout)
        assert not any(o["name"] == name for o in report["orphans"])
    finally:
        docker("rm", "-f", name, check=False)


def test_a_label_value_holding_commas_names_no_other_bottle():
    """The CLI's `.Labels` joins every label with commas; the workspace image's left-out label
    lists file names (some the agent's), and `x,bottle.slug=other` read as labels made the
    agent's container another bottle's, or an orphan, in `status` and the dashboard."""
    from invoke import Context

    from bottle_tasks import names
    from bottle_tasks.state import state_root
    from bottle_tasks.target import LocalTarget

    slug = unique("commas")
    name = f"bottle-{slug}-agent"
    docker("run", "-d", "--name", name, "--label", "bottle.test=1", "--label", f"bottle.slug={slug}",
           "--label", "bottle.role=agent", "--label", "bottle.workspace.left-out=[\"x,bottle.slug=other,y\"]",
           "--entrypoint", "sleep", "debian:bookworm-slim", "60")
    try:
        found = names.labelled(LocalTarget(Context(), state_root()), slug)
        assert [(f.name, f.slug, f.role) for f in found] == [(name, slug, "agent")]
    finally:
        docker("rm", "-f", name, check=False)


def test_name_conflict_takes_next_suffix(bottle):
    slug, manifest = bottle
    squatter = f"bottle-{slug}-net-internal"
    docker("network", "create", squatter)  # not labelled: not ours
    try:
        inv("use", slug, "net", manifest=manifest)
        assert f"bottle-{slug}-net-internal-2" in labelled(slug)
        inv("use", slug, "down", manifest=manifest)
        assert labelled(slug) == []
    finally:
        docker("network", "rm", squatter, check=False)


@pytest.mark.parametrize("steps", [("net",), ("launch",)])
def test_engine_missing_is_a_clear_error(bottle, steps):
    """Said as such from the first docker call on: `launch` begins with the images' inspect,
    whose failure once read as "base image … is not on the local Docker host"."""
    slug, manifest = bottle
    proc = inv("use", slug, *steps, manifest=manifest, check=False,
               env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "no Docker engine answers" in proc.stderr and "make engine" in proc.stderr, proc.stderr
    assert "base image" not in proc.stderr, proc.stderr


def test_unchanged_build_runs_no_docker_build(bottle, tmp_path):
    slug, manifest = bottle
    inv("use", slug, "build", manifest=manifest)  # builds whatever is missing
    # A `docker` on PATH that logs every call, then runs the real one.
    shim, log = tmp_path / "shim", tmp_path / "docker-calls.log"
    shim.mkdir()
    (shim / "docker").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {shutil.which("docker")} "$@"\n')
    (shim / "docker").chmod(0o755)
    path = f"{shim}:{os.environ['PATH']}"
    # Through the CLI only, every call shows: image inspects, no build.
    out = inv("use", slug, "build", manifest=manifest, env={"PATH": path, "BOTTLE_ENGINE_API": "off"})
    calls = log.read_text().splitlines()
    assert calls and all(call.startswith("image inspect") for call in calls), calls
    assert "built nothing" in out.stderr
    # As it runs by default, the engine's socket answers the inspects: the CLI does not run at all.
    log.unlink()
    out = inv("use", slug, "build", manifest=manifest, env={"PATH": path})
    assert not log.exists(), log.read_text()
    assert "built nothing" in out.stderr


def test_env_var_selects_the_agent(bottle):
    slug, manifest = bottle
    out = inv("plan", manifest=manifest, env={"INVOKE_BOTTLE_AGENT": slug})
    assert f"bottle {slug} (agent {slug}" in out.stdout


def test_pinned_name_conflict_is_an_error(bottle):
    slug, manifest = bottle
    pinned = unique("pin")
    squatter = f"bottle-{pinned}-net-internal"
    docker("network", "create", squatter)
    try:
        proc = inv("use", slug, "--name", pinned, "net", manifest=manifest, check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert f"{squatter} is taken" in proc.stderr and "--name" in proc.stderr
        assert labelled(pinned) == []  # the egress network it may have made first is rolled back
    finally:
        docker("network", "rm", squatter, check=False)


def test_missing_runtime_is_a_clear_error(tmp_path, state_home):
    slug = unique()
    manifest = write_manifest(tmp_path, {slug: "    prompt: test\n    runtime: runsc"})
    proc = inv("use", slug, "launch", manifest=manifest, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no runtime 'runsc'" in proc.stderr and "runtime: runc" in proc.stderr
    assert labelled(slug) == []


def test_engine_script_builds_a_base_image_from_scratch():
    """The first-run path of `make engine` (debootstrap + docker import), under a throwaway
    tag so that CI runs it every time, not only on a machine that lacks the base images."""
    import subprocess

    from helpers import REPO

    image = f"bottle-test/base-{unique('b')}:latest"
    before = set(Path("/tmp").glob("bottle-rootfs.*"))
    try:
        run = subprocess.run(["bash", "scripts/engine.sh"], cwd=REPO, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "BOTTLE_BASE_IMAGES": f"{image}=bookworm"})
        assert run.returncode == 0, run.stderr[-3000:]
        assert "unbound variable" not in run.stderr
        # progress while it works: not a terminal here, so a line per debootstrap phase seen (the
        # phase is looked at once a second: a short one, as retrieving from a warm cache, may pass unseen)
        phases = {line.split()[-1] for line in run.stderr.splitlines() if line.startswith(f"engine: {image}: ")}
        assert len(phases) >= 3, run.stderr[-3000:]
        assert docker("run", "--rm", "--label", "bottle.test=1", image, "cat", "/etc/debian_version").stdout.startswith("12")
        assert set(Path("/tmp").glob("bottle-rootfs.*")) == before, "the rootfs was left behind"
    finally:
        docker("rmi", "-f", image, check=False)
