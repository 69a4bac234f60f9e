"""Provisioning again after the agent had a launch to prepare its home: what it planted must
neither redirect provisioning nor hold it up. The agent owns its home volume, and the second
provisioning script (`place.sh`) runs as the agent's own uid, in the agent's directories."""
from __future__ import annotations

import json

import pytest
from helpers import docker, inv, unique, write_manifest

from bottle_tasks import provisioning

pytestmark = pytest.mark.usefixtures("engine")

PROMPT = "placed despite the fifos"
# place.sh once wrote through "<dir>/.bottle-provision.$$": a name the agent could foresee,
# the shell's pid being the next few the container hands out.
PLANTED_AHEAD = 5000
# `inv provision` of a running bottle takes about a second; a planted FIFO held it for ever.
HANG_BOUND = 240


def test_fifos_at_foreseeable_temporary_names_neither_hang_nor_stop_provisioning(tmp_path, state_home,
                                                                                  trust_bundle):
    slug = unique("ph")
    manifest = write_manifest(tmp_path, {slug: f"    prompt: {PROMPT}\n    resources: {{memory: 1g}}"},
                              bundle=str(trust_bundle))
    agent = f"bottle-{slug}-agent"

    def run(*args, check=True, timeout=900):
        return inv("use", slug, *args, manifest=manifest, check=check, timeout=timeout)

    def sh(command: str) -> str:
        return docker("exec", agent, "bash", "-c", command).stdout

    try:
        run("launch")
        # The agent, between two provisionings: a FIFO at every temporary name place.sh could
        # take next, in the home and in ~/.claude; and its own files replaced by junk.
        sh(f'p=$(sh -c "echo \\$\\$"); names=$(seq $((p + 1)) $((p + {PLANTED_AHEAD}))); '
           'cd ~ && mkfifo $(for n in $names; do echo .bottle-provision.$n .claude/.bottle-provision.$n; done) '
           '&& echo junk > .claude/CLAUDE.md && echo junk > .gitconfig && echo "[]" > .claude.json')

        run("provision", timeout=HANG_BOUND)

        # What arrived in the home: the manifest's files, in place, as regular files of the agent.
        assert PROMPT in sh("cat ~/.claude/CLAUDE.md")
        assert "defaultBranch = main" in sh("cat ~/.gitconfig")
        assert json.loads(sh("cat ~/.claude.json"))["hasCompletedOnboarding"] is True
        assert sh("stat -c '%F %U' ~/.claude/CLAUDE.md ~/.gitconfig ~/.claude.json").splitlines() == \
            ["regular file agent"] * 3
        # The FIFOs were not written through (a writer would have blocked), nor left to chance:
        # no temporary file of provisioning is left behind either.
        left = sh("find ~ -maxdepth 2 -name '.bottle-provision.*' ! -type p | wc -l").strip()
        assert left == "0"
        assert int(sh("find ~ -maxdepth 2 -name '.bottle-provision.*' -type p | wc -l")) == 2 * PLANTED_AHEAD
        assert provisioning.PLACE_SCRIPT not in sh("ps -eo args")  # none still waiting in the container
    finally:
        run("down", "--purge", check=False)


# Each program a root step may run, as the agent plants it first on the manifest's PATH: it
# notes who ran it, then runs the real one.
WRAPPER = """#!/bin/sh
n=$(basename "$0")
echo "$n as $(id -u)" >> /tmp/ran
for d in /usr/sbin /usr/bin /sbin /bin; do [ -x "$d/$n" ] && exec "$d/$n" "$@"; done
exit 127
"""
PLANTED = ("cat", "mkdir", "mv", "cp", "chmod", "rm", "ln", "sed", "grep", "find", "openssl",
           "update-ca-certificates", "run-parts")


def test_the_agents_programs_on_the_manifests_path_never_run_as_root(tmp_path, state_home, trust_bundle):
    """A manifest's `env` is the container's, and every `docker exec` inherits it: with PATH
    through ~/.local/bin (as for `pip --user`), the root provisioning script and the root
    `publish` after an `allow` ran what the agent put there, as root."""
    slug = unique("pr")
    body = ("    prompt: path test\n    resources: {memory: 1g}\n"
            '    env: {PATH: "/home/agent/.local/bin:/usr/local/bin:/usr/bin:/bin"}')
    manifest = write_manifest(tmp_path, {slug: body}, bundle=str(trust_bundle))
    agent = f"bottle-{slug}-agent"

    def run(*args, check=True):
        return inv("use", slug, *args, manifest=manifest, check=check, timeout=900)

    def sh(command: str) -> str:
        return docker("exec", agent, "bash", "-c", command).stdout

    try:
        run("launch")
        sh(f"/bin/mkdir -p ~/.local/bin && touch /tmp/ran && /bin/chmod 666 /tmp/ran && cd ~/.local/bin && "
           f"for n in {' '.join(PLANTED)}; do /bin/cat > $n <<'EOF'\n{WRAPPER}EOF\n/bin/chmod +x $n; done")
        sh("cat /dev/null")  # the agent's own shell finds them first: the PATH is in force
        assert sh("/bin/cat /tmp/ran").splitlines() == ["cat as 1000"]
        run("provision")
        run("allow", "docs.example.com")  # publish: the agent's copy of the policy, written as root
        ran = sh("/bin/cat /tmp/ran").splitlines()
        assert not [line for line in ran if line.endswith(" as 0")], ran
        assert "docs.example.com" in sh("/bin/cat /etc/bottle/current/policy.json")  # published all the same
    finally:
        run("down", "--purge", check=False)
