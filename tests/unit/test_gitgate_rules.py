"""The git gate's pure parts: the remote model and URL rules, the push policy, the manifest
fields, the agent's git config, and the firewall policy's per-source rule."""
from __future__ import annotations

import signal
import subprocess
import textwrap

import pytest

from bottle_tasks import policy_render, provisioning
from bottle_tasks.manifest import ManifestError, load
from bottle_tasks.plan import GITGATE_URL
from bottle_tasks.sidecars.firewall import policy as firewall_policy
from bottle_tasks.sidecars.gitgate import cgi
from bottle_tasks.sidecars.gitgate import push_policy as pp
from bottle_tasks.sidecars.gitgate.remotes import PushPolicy, Remote, RemoteError, check_url

A, B = "a" * 40, "b" * 40
MAIN = "refs/heads/main"


def update(ref: str, old: str = A, new: str = B) -> pp.Update:
    return pp.Update(old, new, ref)


@pytest.mark.parametrize("url, fixed", [
    ("git@github.com:org/repo.git", "https://github.com/org/repo.git"),
    ("ssh://git@github.com/org/repo.git", "https://github.com/org/repo.git"),
])
def test_ssh_remotes_are_refused_with_the_https_form(url, fixed):
    with pytest.raises(RemoteError, match=fixed):
        check_url(url)


@pytest.mark.parametrize("url", ["http://h/x.git", "https://user:tok@h/x.git", "https://h/x.git?a=1",
                                 "https://h/../x", "https://h/x y", "https://h", "https://h/x\x1b[31m"])
def test_bad_urls_are_refused(url):
    with pytest.raises(RemoteError):
        check_url(url)


def test_url_is_normalised():
    assert check_url("https://Git.Example.com:443/org/repo.git") == "https://git.example.com/org/repo.git"
    assert Remote("o", check_url("https://h.example:8443/r.git")).allow_entry == "h.example:8443"


@pytest.mark.parametrize("upd, policy_, ff, rule", [
    (update("refs/heads/review/x", old="0" * 40), PushPolicy(), None, "allowed"),
    (update(MAIN), PushPolicy(), True, "default-branch"),
    (update("refs/heads/x"), PushPolicy(), False, "force"),
    (update("refs/heads/x"), PushPolicy(force=True), False, "allowed"),
    (update("refs/heads/x", new="0" * 40), PushPolicy(), None, "delete"),
    (update("refs/heads/x", new="0" * 40), PushPolicy(delete=True), None, "allowed"),
    (update("refs/tags/v1", old="0" * 40), PushPolicy(), None, "tags"),
    (update("refs/tags/v1", old="0" * 40), PushPolicy(tags=True), None, "allowed"),
    (update("refs/heads/feature/x"), PushPolicy(refs=("review/*",)), True, "refs"),
    (update("refs/heads/review/x"), PushPolicy(refs=("review/*",)), True, "allowed"),
    (update(MAIN), PushPolicy(refs=("main",)), True, "allowed"),
    (update("refs/notes/commits"), PushPolicy(), True, "ref-name"),
    (update("refs/heads/a..b"), PushPolicy(), True, "ref-name"),
    (update("refs/heads/x\x1b[2J"), PushPolicy(), True, "ref-name"),
    (update("refs/heads/x.lock"), PushPolicy(), True, "ref-name"),
])
def test_push_policy(upd, policy_, ff, rule):
    verdict = pp.check(upd, policy_, MAIN, ff)
    assert verdict.rule == rule and verdict.ok == (rule == "allowed")
    if not verdict.ok:
        assert "allowed:" in verdict.message  # every refusal says what would be allowed


def test_unknown_default_branch_refuses_branch_pushes():
    assert pp.check(update("refs/heads/x"), PushPolicy(), None, True).rule == "default-branch"


def test_parse_update_refuses_junk():
    assert pp.parse_update(f"{A} {B} refs/heads/x") == update("refs/heads/x")
    assert pp.parse_update(f"{A} {B}") is None and pp.parse_update(f"zz {B} refs/heads/x") is None


def manifest(tmp_path, remotes: str, secrets: str = "[GIT_TOKEN]"):
    text = (f"agents:\n  demo:\n    secrets: {secrets}\n    git:\n      remotes:\n"
            + textwrap.indent(textwrap.dedent(remotes), "        "))
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return load(str(path)).agents["demo"]


def test_manifest_remote_forms(tmp_path):
    agent = manifest(tmp_path, """\
        plain: https://github.com/org/pub.git
        origin:
          url: https://github.com/org/repo.git
          secret: GIT_TOKEN
          push: {refs: [review/*], force: false, delete: true, tags: false, max_bytes: 2048}
        """)
    origin = agent.git.remotes["origin"]
    assert origin.secret == "GIT_TOKEN" and origin.push.refs == ("review/*",) and origin.push.delete
    assert agent.git.remotes["plain"].secret is None and agent.git.remotes["plain"].push == PushPolicy()
    assert [r.name for r in agent.gated_remotes] == ["plain", "origin"]


@pytest.mark.parametrize("remotes, field, words", [
    ("origin: git@github.com:org/repo.git\n", "git.remotes.origin.url", "https://github.com/org/repo.git"),
    ("origin: {url: 'https://h.example/r.git', secret: OTHER}\n", "git.remotes.origin.secret", "secrets"),
    ("origin: {url: 'https://h.example/r.git', token: x}\n", "git.remotes.origin", "token"),
    ("origin: {url: 'https://h.example/r.git', push: {force: yes}}\n", "git.remotes.origin.push.force", ""),
    ("origin: {url: 'https://h.example/r.git', push: {refs: ['refs/notes/*']}}\n", "git.remotes.origin.push.refs[0]", ""),
    ("Bad Name: https://h.example/r.git\n", "git.remotes", "remote name"),
])
def test_manifest_remote_errors_name_the_field(tmp_path, remotes, field, words):
    with pytest.raises(ManifestError) as ei:
        manifest(tmp_path, remotes)
    assert field in ei.value.field and words in str(ei.value)


def test_agent_git_config_routes_remotes_through_the_gate(tmp_path):
    agent = manifest(tmp_path, "origin: {url: 'https://h.example/org/repo.git', secret: GIT_TOKEN}\n")
    text = provisioning.gitconfig(agent)
    assert f'[url "{GITGATE_URL}/origin.git"]\n\tinsteadOf = https://h.example/org/repo.git' in text
    assert f'[url "{GITGATE_URL}/origin"]\n\tinsteadOf = https://h.example/org/repo\n' in text
    assert f'[http "{GITGATE_URL}/"]\n\tproxy = \n' in text
    assert "GIT_TOKEN" not in text


def test_policy_allows_remote_hosts_for_the_gate_only(tmp_path):
    agent = manifest(tmp_path, "origin: {url: 'https://h.example:8443/org/repo.git', secret: GIT_TOKEN}\n")
    rendered = policy_render.render("demo", agent, "172.30.5.0/24", {}, gate_cidr="172.30.7.0/24")
    assert rendered["allow_for"] == {"172.30.7.0/24": ["h.example:8443"]}
    assert "h.example:8443" not in rendered["allow"]
    parsed = firewall_policy.parse(rendered)
    assert parsed.allow_for_client("h.example", 8443, "172.30.7.9") is not None
    assert parsed.allow_for_client("h.example", 8443, "172.30.5.9") is None
    assert policy_render.render("demo", agent, "172.30.5.0/24", {})["allow_for"] == {}


@pytest.mark.parametrize("ref, target, refused", [
    ("refs/heads/x", pp.Target("commit", True), False),
    ("refs/heads/x", pp.Target("blob", False), True),
    ("refs/heads/x", pp.Target("tag", True), True),      # an annotated tag is no commit, even of one
    ("refs/heads/x", None, True),                         # git cannot say what it is: refuse
    ("refs/tags/v1", pp.Target("tag", True), False),
    ("refs/tags/v1", pp.Target("commit", True), False),
    ("refs/tags/v1", pp.Target("tree", False), True),
    ("refs/tags/v1", pp.Target("tag", False), True),      # a tag of a blob or a tree
])
def test_a_ref_holds_a_commit_or_a_tag_of_one(ref, target, refused):
    verdict = pp.check_target(update(ref, old="0" * 40), target)
    assert (verdict is not None and verdict.rule == "object-type" and not verdict.ok) == refused


def test_a_delete_has_no_target_to_check():
    assert pp.check_target(update("refs/heads/x", new="0" * 40), None) is None


def test_a_pushs_git_processes_are_killed_at_their_cpu_limit_children_too():
    """A child of the limited process (receive-pack's index-pack) has the limit of its own."""
    busy = "sh -c 'while :; do :; done'; echo child ended by signal $(($? - 128))"
    run = subprocess.run(cgi.cpu_limited(["sh", "-c", busy], 1), capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() in (f"child ended by signal {signal.SIGXCPU}", f"child ended by signal {signal.SIGKILL}")
    assert cgi.cpu_limited(["git", "http-backend"], None) == ["git", "http-backend"]
