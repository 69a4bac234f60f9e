"""A real engine restart: dockerd stops, every container with it; it starts again. `status`
shows the bottle stopped, `launch` brings the same containers back with the live policy
changes and the agent's files, and `down` cleans up.

Restarting dockerd stops every container on the engine, so this runs only when the engine
holds nothing but what this test created (as on a CI machine). Beside anybody else's
containers it refuses: under CI=true that is a failure, elsewhere a skip that says why
(test_bottle_e2e's stopped-bottle test covers the same path by stopping this bottle's
containers only)."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from helpers import REPO, docker, missing
from test_bottle_e2e import OTHER, UPSTREAM, module_bottle

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    yield from module_bottle(tmp_path_factory, test_ca, trust_bundle, prefix="rst")


def foreign_containers(bottle) -> list[str]:
    ours = set(bottle.upstreams)
    out = docker("ps", "-a", "--no-trunc", "--format", '{{.ID}} {{.Label "bottle.slug"}} {{.Names}}').stdout
    return [line for line in out.splitlines()
            if line.split(" ")[0] not in ours and line.split(" ")[1] != bottle.slug]


def restart_engine() -> None:
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "dockerd did not stop within 60 s"
        time.sleep(0.5)
    subprocess.run(["bash", str(REPO / "scripts" / "engine.sh")], check=True, capture_output=True,
                   env=dict(os.environ, BOTTLE_BASE_IMAGES="debian:bookworm-slim"))


def test_a_bottle_survives_an_engine_restart(bottle):
    others = foreign_containers(bottle)
    if others:
        missing("the engine holds containers this test did not create: " + "; ".join(others))
    bottle.inv("allow", OTHER)
    bottle.sh("echo kept > ~/work-in-progress.txt", check=True)
    names = [f"bottle-{bottle.slug}-{role}" for role in ("agent", "firewall")]
    ids = {name: docker("inspect", "-f", "{{.Id}}", name).stdout.strip() for name in names}

    restart_engine()

    report = json.loads(bottle.inv("status", "--json").stdout)["bottles"][bottle.slug]
    assert report["containers"] and all(c["status"].startswith("Exited") for c in report["containers"]), report
    for upstream in bottle.upstreams:  # the test's stand-in upstreams stopped too
        docker("start", upstream)
    bottle.inv("launch")
    assert {name: docker("inspect", "-f", "{{.Id}}", name).stdout.strip() for name in names} == ids
    assert bottle.sh("cat ~/work-in-progress.txt").stdout.strip() == "kept"
    assert bottle.curl(f"https://{OTHER}/after-engine-restart")[0].endswith("200")  # the live allow
    assert bottle.curl(f"https://{UPSTREAM}/after-engine-restart")[0].endswith("200")
