"""One run at a time per bottle (a lock in the state dir), and bottles launched side by side
do not interfere. Runs that only look (plan, status, logs, exec...) never wait for a lock."""
from __future__ import annotations

import fcntl
import os
import subprocess

import pytest
from helpers import INV, REPO, docker, inv, labelled, unique, write_manifest

pytestmark = pytest.mark.usefixtures("engine")

ROLES = {"agent", "firewall", "net-internal", "net-egress"}


@pytest.fixture
def bottles(tmp_path, state_home, trust_bundle):
    """Four fresh agents in one manifest (the tests' trust bundle: the images are the e2e ones)."""
    slugs = [unique("par") for _ in range(4)]
    body = "    prompt: test\n    resources: {memory: 512m, cpus: 0.5, pids: 128}\n    network: {allow: [example.org]}"
    manifest = write_manifest(tmp_path, {slug: body for slug in slugs}, bundle=str(trust_bundle))
    yield slugs, manifest
    for slug in slugs:
        inv("use", slug, "down", manifest=manifest, check=False)
        for name in labelled(slug):
            docker("rm", "-f", name, check=False)
            docker("network", "rm", name, check=False)


def start(slug: str, manifest, *args: str) -> subprocess.Popen:
    env = dict(os.environ, INVOKE_BOTTLE_MANIFEST=str(manifest))
    return subprocess.Popen([INV, "use", slug, *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def roles(slug: str) -> list[str]:
    """The role of every resource labelled with this bottle: each must appear once."""
    found = []
    for kind in (["ps", "-a"], ["network", "ls"]):
        out = docker(*kind, "--filter", f"label=bottle.slug={slug}", "--format", '{{.Label "bottle.role"}}').stdout
        found += [line for line in out.splitlines() if line]
    return sorted(found)


def test_a_busy_bottle_is_refused_plainly_and_left_alone(bottles, state_home):
    slugs, manifest = bottles
    slug = slugs[0]
    lock = state_home / "bottle" / "locks" / f"{slug}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as held:  # another run holds the bottle
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        proc = inv("use", slug, "net", manifest=manifest, check=False)
        assert proc.returncode != 0, proc.stderr
        assert "busy" in proc.stderr and "4242" in proc.stderr and "Traceback" not in proc.stderr
        assert labelled(slug) == []
        assert inv("use", slug, "plan", manifest=manifest).returncode == 0  # looking is never blocked
    inv("use", slug, "net", manifest=manifest)  # released: the next run proceeds
    assert sorted(roles(slug)) == ["net-egress", "net-internal"]


def test_two_launches_of_one_bottle_make_one_bottle(bottles):
    slugs, manifest = bottles
    slug = slugs[0]
    runs = [start(slug, manifest, "launch") for _ in range(2)]
    results = [(run.wait(timeout=600), run.communicate()[1]) for run in runs]
    codes = sorted(code for code, _ in results)
    print("two launches:", [(code, "busy" in err) for code, err in results])
    assert codes[0] == 0, results  # at least one launched
    for code, err in results:
        assert code == 0 or "busy" in err, err  # the other launched after it, or said busy
        assert "Traceback" not in err
    assert sorted(roles(slug)) == sorted(ROLES), "a half-made or doubled bottle"
    assert docker("exec", f"bottle-{slug}-agent", "true").returncode == 0


def test_four_bottles_launch_side_by_side(bottles):
    slugs, manifest = bottles
    runs = {slug: start(slug, manifest, "launch") for slug in slugs}
    for run in runs.values():
        code = run.wait(timeout=900)
        assert code == 0, run.communicate()[1]
    for slug in slugs:
        assert sorted(roles(slug)) == sorted(ROLES), slug
        out = docker("exec", f"bottle-{slug}-agent", "sh", "-c",
                     "curl -sS -o /dev/null -w '%{http_code}' --max-time 10 http://blocked.invalid/", check=False)
        assert out.stdout.strip() == "403", (slug, out.stdout, out.stderr)  # its own firewall answers
