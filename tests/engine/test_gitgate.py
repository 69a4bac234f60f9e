"""The git gate on the real engine: a stand-in git host (smart HTTP over TLS, basic auth, a
repository whose default branch is main) on the bottle's egress network, and an agent that
clones, fetches and pushes through the gate, never holding the token.

Everything is checked where it lands: on the upstream's side (its refs, its request log),
in the agent's terminal output, in the gate's audit lines."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from helpers import docker, module_state_home, unique, write_manifest
from test_bottle_e2e import Bottle, teardown

from bottle_tasks import pki
from bottle_tasks.manifest import load
from bottle_tasks.plan import build_plan

pytestmark = pytest.mark.usefixtures("engine")

HERE = Path(__file__).resolve().parent
GIT_HOST = "git.upstream.test"
URL = f"https://{GIT_HOST}/org/repo.git"
# Shaped like a real GitHub token, which the firewall's DLP recognises anywhere else: only
# the gate's own requests to its remote carry it (dlp.delegated).
TOKEN = "ghp_" + secrets.token_hex(18)
FAKE_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def body(cidr: str) -> str:
    return f"""    prompt: git gate test bottle
    secrets: [GIT_TOKEN]
    resources: {{memory: 1g, cpus: 1, pids: 256}}
    git:
      remotes:
        origin: {{url: "{URL}", secret: GIT_TOKEN}}
    network:
      allow: []
      allowed_cidrs: [{cidr}]
"""


def start_git_upstream(test_ca, workdir: Path, network: str, image: str) -> str:
    certs = workdir / "git-upstream"
    certs.mkdir(exist_ok=True)
    leaf = pki.mint_leaf(test_ca, [GIT_HOST])
    (certs / "cert.pem").write_bytes(leaf.cert_pem)
    (certs / "key.pem").write_bytes(leaf.key_pem)
    (certs / "token").write_text(TOKEN)
    for name in ("key.pem", "token"):
        (certs / name).chmod(0o644)  # the server reads them as another uid
    (certs / "git_server.py").write_text((HERE / "upstream" / "git_server.py").read_text())
    return docker("run", "-d", "--init", "--label", "bottle.test=1", "--network", network,
                  "--network-alias", GIT_HOST, "-v", f"{certs}:/upstream:ro", "--entrypoint", "python3",
                  image, "/upstream/git_server.py", "/upstream/token").stdout.strip()


@pytest.fixture(scope="module")
def gated(tmp_path_factory, test_ca, trust_bundle):
    with module_state_home(tmp_path_factory, "gitgate") as (tmp, state_home):
        slug = unique("gate")
        manifest = write_manifest(tmp, {slug: body("10.255.255.0/24")}, bundle=str(trust_bundle))
        bottle = Bottle(slug, manifest, env={"GIT_TOKEN": TOKEN})
        bottle.upstreams = []
        try:
            bottle.inv("net")
            state = json.loads((state_home / "bottle" / slug / "state.json").read_text())
            manifest.write_text(manifest.read_text().replace("10.255.255.0/24", state["cidr"]["net-egress"]))
            loaded = load(str(manifest))
            bottle.inv("build")
            gate_tag = build_plan(slug, loaded, loaded.agents[slug]).images["gitgate"].tag
            bottle.upstreams.append(start_git_upstream(test_ca, tmp, f"bottle-{slug}-net-egress", gate_tag))
            bottle.launch_output = bottle.inv("launch")
            bottle.state_home = state_home
            yield bottle
        finally:
            teardown(bottle)


def upstream_log(bottle) -> list[dict]:
    out = docker("logs", bottle.upstreams[0]).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def upstream_ref(bottle, ref: str) -> str:
    return docker("exec", bottle.upstreams[0], "git", "--git-dir=/tmp/upstream/org/repo.git",
                  "rev-parse", "-q", "--verify", ref, check=False).stdout.strip()


def gate_audit(bottle) -> list[dict]:
    out = docker("logs", f"bottle-{bottle.slug}-gitgate").stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def in_clone(bottle, command: str):
    return bottle.sh(f"cd ~/repo && {command}")


@pytest.fixture(scope="module")
def cloned(gated):
    out = gated.sh(f"rm -rf ~/repo && git clone {URL} ~/repo 2>&1")
    assert out.returncode == 0, out.stdout + out.stderr
    in_clone(gated, "git config user.email a@b.invalid && git config user.name agent")
    return gated


def test_clone_through_the_gate(cloned):
    assert "upstream repository" in in_clone(cloned, "cat README.md").stdout
    assert in_clone(cloned, "git rev-parse --abbrev-ref HEAD").stdout.strip() == "main"
    # the clone's remote is the manifest's URL, unchanged: the rewrite is in the agent's git config
    assert in_clone(cloned, "git config remote.origin.url").stdout.strip() == URL
    assert any(r.get("authorized") for r in upstream_log(cloned))


def test_fetch_sees_new_upstream_commits(cloned):
    docker("exec", cloned.upstreams[0], "sh", "-c",
           "cd /tmp/upstream/seed && echo more >> README.md && git -c user.name=u -c user.email=u@x commit -qam more"
           " && git push -q /tmp/upstream/org/repo.git main:main")
    out = in_clone(cloned, "git fetch origin 2>&1 && git log --oneline origin/main")
    assert out.returncode == 0 and "more" in out.stdout, out.stdout + out.stderr
    in_clone(cloned, "git merge -q --ff-only origin/main")


def test_push_new_branch_arrives_upstream(cloned):
    out = in_clone(cloned, "git checkout -qb review/one && echo change > change.txt && git add change.txt"
                           " && git commit -qm 'a change' && git push origin review/one 2>&1")
    assert out.returncode == 0, out.stdout + out.stderr
    head = in_clone(cloned, "git rev-parse HEAD").stdout.strip()
    assert upstream_ref(cloned, "refs/heads/review/one") == head
    pushes = [r for r in gate_audit(cloned) if r.get("event") == "push"]
    assert pushes[-1]["decision"] == "allow" and pushes[-1]["updates"][0]["ref"] == "refs/heads/review/one"


def test_a_push_over_the_firewalls_body_limit_arrives(cloned):
    """2 MiB of incompressible data: over the firewall's 1 MiB DLP body limit, which applies to
    what the agent sends, not to the gate's pushes (the gate scans what a push adds itself)."""
    out = in_clone(cloned, "git checkout -q -b review/large main && head -c 2097152 /dev/urandom > blob.bin && "
                           "git add blob.bin && git commit -q -m 'a large file' && git push -q origin review/large 2>&1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert upstream_ref(cloned, "refs/heads/review/large") == in_clone(cloned, "git rev-parse HEAD").stdout.strip()


def test_push_to_main_is_refused(cloned):
    before = upstream_ref(cloned, "refs/heads/main")
    out = in_clone(cloned, "git checkout -q main && echo x >> README.md && git commit -qam direct"
                           " && git push origin main 2>&1")
    assert out.returncode != 0
    assert "default-branch" in out.stdout and "default branch" in out.stdout
    assert upstream_ref(cloned, "refs/heads/main") == before
    in_clone(cloned, "git reset -q --hard origin/main")


def test_force_push_is_refused(cloned):
    before = upstream_ref(cloned, "refs/heads/review/one")
    out = in_clone(cloned, "git checkout -q review/one && git commit -q --amend -m rewritten"
                           " && git push --force origin review/one 2>&1")
    assert out.returncode != 0 and "(force)" in out.stdout, out.stdout
    assert upstream_ref(cloned, "refs/heads/review/one") == before


def test_delete_is_refused(cloned):
    out = in_clone(cloned, "git push origin :review/one 2>&1")
    assert out.returncode != 0 and "(delete)" in out.stdout, out.stdout
    assert upstream_ref(cloned, "refs/heads/review/one")


def test_tag_is_refused(cloned):
    out = in_clone(cloned, "git tag v1 && git push origin v1 2>&1")
    assert out.returncode != 0 and "(tags)" in out.stdout, out.stdout
    assert not upstream_ref(cloned, "refs/tags/v1")


def test_secret_in_a_commit_is_refused_and_nothing_reaches_upstream(cloned):
    posts_before = len([r for r in upstream_log(cloned) if r.get("path", "").endswith("git-receive-pack")])
    out = in_clone(cloned, f"git checkout -qb review/leak origin/main && echo 'aws_key = {FAKE_AWS_KEY}' > cfg"
                           " && git add cfg && git commit -qm config && git push origin review/leak 2>&1")
    assert out.returncode != 0 and "(dlp)" in out.stdout, out.stdout
    assert FAKE_AWS_KEY not in out.stdout.replace(f"aws_key = {FAKE_AWS_KEY}", "")
    assert not upstream_ref(cloned, "refs/heads/review/leak")
    posts_after = len([r for r in upstream_log(cloned) if r.get("path", "").endswith("git-receive-pack")])
    assert posts_after == posts_before
    assert FAKE_AWS_KEY not in docker("logs", f"bottle-{cloned.slug}-gitgate").stdout


# Each once carried a key past the gate's scan (it read `git log -p` text, not the objects):
# a message line that looks like diff context or a removed line, the committer, an empty
# file's name, what a merge commit adds itself, a commit header git log does not print.
SCAN_BYPASSES = {
    "message": "git commit -q --allow-empty -m subject -m ' {key}' -m '-{key}'",
    "committer": "GIT_COMMITTER_NAME={key} GIT_COMMITTER_EMAIL={key}@example.test git commit -q --allow-empty -m c",
    "file-name": ": > {key} && git add {key} && git commit -qm c",
    "merge": "git checkout -qB side origin/main && echo side > side.txt && git add side.txt && git commit -qm side"
             " && git checkout -q review/e-merge && git merge -q --no-ff --no-commit side"
             " && echo 'k = {key}' > evil.txt && git add evil.txt && git commit -qm 'merge side'",
    "header": "git reset -q --hard $(printf 'tree %s\\nparent %s\\nauthor a <a@b> 1700000000 +0000\\n"
              "committer a <a@b> 1700000000 +0000\\nx-note {key}\\n\\nc\\n' $(git rev-parse HEAD^{{tree}})"
              " $(git rev-parse HEAD) | git hash-object -t commit -w --stdin)",
}


@pytest.mark.parametrize("case", sorted(SCAN_BYPASSES))
def test_every_object_a_push_adds_is_scanned(cloned, case):
    key = ("AKIA" + case.upper().replace("-", "") + "X" * 16)[:20]
    branch = f"review/e-{case}"
    out = in_clone(cloned, f"git checkout -qB {branch} origin/main && {SCAN_BYPASSES[case].format(key=key)}"
                           f" && git push origin {branch} 2>&1")
    assert out.returncode != 0 and "(dlp)" in out.stdout, out.stdout + out.stderr
    assert not upstream_ref(cloned, f"refs/heads/{branch}")
    assert key not in docker("logs", f"bottle-{cloned.slug}-gitgate").stdout


def test_a_branch_that_is_not_a_commit_is_refused(cloned):
    out = in_clone(cloned, "git push origin $(echo data | git hash-object -w --stdin):refs/heads/review/blob 2>&1")
    assert out.returncode != 0 and "(object-type)" in out.stdout, out.stdout + out.stderr
    assert not upstream_ref(cloned, "refs/heads/review/blob")


# A receive-pack request with no advertisement before it: the mirror is made by it, and
# must not take git init's refs/heads/master for the upstream's default branch.
RAW_PUSH = """
import subprocess, sys, urllib.request
old, new = sys.argv[1], sys.argv[2]
pkt = lambda b: b"%04x" % (len(b) + 4) + b
command = f"{old} {new} refs/heads/main".encode() + b"\\0report-status side-band-64k agent=test\\n"
pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs"], input=(new + "\\n").encode(),
                      capture_output=True, check=True).stdout
request = urllib.request.Request("http://gitgate:8080/origin.git/git-receive-pack", data=pkt(command) + b"0000" + pack,
                                 headers={"Content-Type": "application/x-git-receive-pack-request"})
sys.stdout.write(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request).read().decode("latin-1"))
"""


def test_a_first_request_that_pushes_cannot_take_the_default_branch(cloned):
    in_clone(cloned, "git fetch -q origin")
    before = upstream_ref(cloned, "refs/heads/main")
    docker("exec", f"bottle-{cloned.slug}-gitgate", "rm", "-rf", "/tmp/gitgate/mirrors/origin.git")
    cloned.sh(f"cat > /tmp/raw_push.py <<'PY'\n{RAW_PUSH}\nPY")
    out = in_clone(cloned, "git checkout -qB straight origin/main && git commit -q --allow-empty -m straight"
                           " && python3 /tmp/raw_push.py $(git rev-parse origin/main) $(git rev-parse HEAD) 2>&1")
    assert "default-branch" in out.stdout, out.stdout + out.stderr
    assert upstream_ref(cloned, "refs/heads/main") == before
    pushes = [r for r in gate_audit(cloned) if r.get("event") == "push"]
    assert pushes[-1]["decision"] == "deny" and pushes[-1]["rule"] == "default-branch"


# A fetch's request, gzipped as git sends a large one: `want` the tip, then `have` lines,
# `have_count` of them (as many as an attacker likes: they compress to almost nothing).
RAW_FETCH = """
import gzip, sys, urllib.error, urllib.request
want, have_count = sys.argv[1], int(sys.argv[2])
pkt = lambda b: b"%04x" % (len(b) + 4) + b
request = pkt(f"want {want} side-band-64k\\n".encode()) + b"0000" + pkt(f"have {want}\\n".encode()) * have_count + pkt(b"done\\n")
body = gzip.compress(request)
post = urllib.request.Request("http://gitgate:8080/origin.git/git-upload-pack", data=body,
                              headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"})
try:
    answer = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(post, timeout=120)
    data = answer.read()
    print(answer.status, len(body), data[:12].decode("latin-1"), "with a pack" if b"PACK" in data else "without a pack")
except urllib.error.HTTPError as refused:
    print(refused.code, len(body), refused.read().decode())
"""


def test_a_gzipped_fetch_is_served_and_one_that_inflates_without_end_is_refused(cloned):
    """git http-backend inflated a fetch's gzipped request without a bound: 16 MiB of gzip are 16 GB
    of `have` lines for upload-pack. The gate inflates it itself now, to the same 16 MiB."""
    cloned.sh(f"cat > /tmp/raw_fetch.py <<'PY'\n{RAW_FETCH}\nPY")
    tip = in_clone(cloned, "git fetch -q origin && git rev-parse origin/main").stdout.strip()
    served = in_clone(cloned, f"python3 /tmp/raw_fetch.py {tip} 0 2>&1").stdout
    assert served.startswith("200 ") and "NAK" in served and "with a pack" in served, served
    bomb = in_clone(cloned, f"python3 /tmp/raw_fetch.py {tip} 2000000 2>&1").stdout  # 98 MB of haves
    status, sent, answer = bomb.split(" ", 2)
    assert int(sent) < 1 << 20, bomb  # what the agent sent: well under the 16 MiB bound
    assert status == "413" and "larger than 16 MiB inflated" in answer, bomb


def memory_peak_mib(container: str, reset: bool = False) -> float:
    """The container's peak memory (cgroup v1: resettable; v2: since its start)."""
    cid = docker("inspect", "--format", "{{.Id}}", container).stdout.strip()
    v1 = Path("/sys/fs/cgroup/memory/docker") / cid / "memory.max_usage_in_bytes"
    peak = v1 if v1.exists() else next(Path("/sys/fs/cgroup").glob(f"**/*{cid}*/memory.peak"))
    if reset and peak == v1:
        v1.write_text("0")
    return int(peak.read_text()) / (1 << 20)


def test_a_pushed_blob_bomb_costs_the_gate_little_memory(cloned):
    """A 400 MB blob of zeros is a pack of 400 KiB: git inflates it before any hook runs, and
    held it whole, twice (index-pack, then the scan's cat-file). Streamed now; still refused."""
    gate = f"bottle-{cloned.slug}-gitgate"
    memory_peak_mib(gate, reset=True)
    out = in_clone(cloned, "git checkout -qB review/bomb origin/main && head -c 400000000 /dev/zero > zeros"
                           " && git -c core.bigFileThreshold=1m add zeros && git commit -qm zeros"
                           " && git -c core.bigFileThreshold=1m push origin review/bomb 2>&1;"
                           " status=$?; git rm -q --cached zeros; rm -f zeros; exit $status")
    assert out.returncode != 0 and "too much to scan" in out.stdout, out.stdout + out.stderr
    assert not upstream_ref(cloned, "refs/heads/review/bomb")
    peak = memory_peak_mib(gate)
    assert peak < 200, f"the gate's memory peaked at {peak:.0f} MiB"


def test_agent_cannot_reach_the_git_host_directly(cloned):
    out = cloned.sh(f"git -c url.{URL}.insteadOf=nothing ls-remote {URL} 2>&1; "
                    f"curl -sS --max-time 20 -o /dev/null -w '%{{http_code}}' https://{GIT_HOST}/ 2>&1")
    assert "403" in out.stdout or "not on the allowlist" in out.stdout, out.stdout
    fw = docker("logs", f"bottle-{cloned.slug}-firewall").stdout
    assert any(GIT_HOST in line and '"deny"' in line for line in fw.splitlines())


def test_token_never_reaches_the_agent_or_inspect_or_logs(cloned):
    agent = f"bottle-{cloned.slug}-agent"
    seen = cloned.sh("env; cat ~/.gitconfig; git -C ~/repo config -l; cat ~/repo/.git/config;"
                     " cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n';"
                     " grep -rs . ~ /tmp /workspace 2>/dev/null | head -c 2000000").stdout
    assert TOKEN not in seen
    for role in ("agent", "gitgate", "firewall"):
        name = f"bottle-{cloned.slug}-{role}"
        assert TOKEN not in docker("inspect", name).stdout
        logs = docker("logs", name)
        assert TOKEN not in logs.stdout + logs.stderr
    assert TOKEN not in docker("exec", agent, "ps", "auxww", check=False).stdout


def test_audit_lines_for_fetch_and_push(cloned):
    records = gate_audit(cloned)
    assert {"fetch", "push"} <= {r.get("event") for r in records}
    refused = [r for r in records if r.get("event") == "push" and r["decision"] == "deny"]
    assert {"default-branch", "force", "delete", "dlp"} <= {r["rule"] for r in refused}
    logs = cloned.inv("logs", "--json").stdout
    assert any('"gitgate"' in line for line in logs.splitlines())


def test_the_gate_is_hardened_like_the_other_sidecars(gated):
    info = json.loads(docker("inspect", f"bottle-{gated.slug}-gitgate").stdout)[0]
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] and host["CapDrop"] in (["ALL"], ["all"])
    assert "no-new-privileges" in host["SecurityOpt"] and host["Init"] is True
    assert host["Memory"] > 0 and host["PidsLimit"] > 0 and host["NanoCpus"] == 10**9
    assert not info["Config"]["User"].startswith("0")  # never root
    assert [m["Destination"] for m in info["Mounts"] if m["Type"] == "bind"] == ["/etc/bottle"]
    assert all(not m["RW"] for m in info["Mounts"] if m["Type"] == "bind")
