"""What `provision` puts into the agent container, as one tar with exact owners and
modes, plus the script the one `docker exec` runs. Pure: manifest data in, bytes out."""
from __future__ import annotations

import io
import json
import tarfile
import time

AGENT_UID = AGENT_GID = 1000
HOME = "/home/agent"
# Managed settings outrank the user's and are root-owned: the agent cannot edit
# away the manifest's permissions (its own ~/.claude/settings.json it can).
MANAGED_SETTINGS = "/etc/claude-code/managed-settings.json"
BOTTLE_CA = "/usr/local/share/ca-certificates/bottle-ca.crt"
SCRIPT = "/opt/bottle/provision.sh"

# Runs as root (uid 0, no capabilities): everything it touches is root-owned.
# It does what update-ca-certificates does for one added CA, in a few ms instead
# of ~1 s: the system bundle becomes the image's original bundle plus the bottle
# CA (rebuilt from the original each time, so a re-minted CA replaces the old one),
# and the CA stays in /usr/local/share/ca-certificates for any later full update.
PROVISION_SH = f"""#!/bin/sh
set -eu
bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$bundle.image" ] || cp "$bundle" "$bundle.image"
cat "$bundle.image" {BOTTLE_CA} > "$bundle.new"
chmod 644 "$bundle.new"
mv "$bundle.new" "$bundle"
ln -sf {BOTTLE_CA} /etc/ssl/certs/bottle-ca.pem
echo provisioned
"""


def claude_settings(agent) -> dict:
    """Managed settings: the manifest's permissions and the traffic switches."""
    settings = {
        "permissions": {"allow": list(agent.claude.permissions_allow),
                        "deny": list(agent.claude.permissions_deny)},
        "env": {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"},
        "includeCoAuthoredBy": False,
    }
    if agent.claude.model:
        settings["model"] = agent.claude.model
    return settings


# What the agent holds for each secret: the egress proxy replaces it with the real value.
PLACEHOLDER = "bottle-placeholder-the-egress-proxy-injects-the-real-value"


def claude_state(agent) -> dict:
    """~/.claude.json: first-run onboarding done, the workspace trusted, MCP servers, and the
    placeholder API key pre-approved (Claude Code asks once about a key from the environment,
    remembering the answer by the key's last 20 characters)."""
    state = {
        "hasCompletedOnboarding": True,
        "bypassPermissionsModeAccepted": False,
        "autoUpdates": False,
        "projects": {"/workspace": {"hasTrustDialogAccepted": True, "allowedTools": []}},
    }
    if "ANTHROPIC_API_KEY" in agent.secrets:
        state["customApiKeyResponses"] = {"approved": [PLACEHOLDER[-20:]], "rejected": []}
    if agent.claude.mcp_servers:
        state["mcpServers"] = {name: dict(spec) for name, spec in agent.claude.mcp_servers.items()}
    return state


def gitconfig(agent) -> str:
    lines = ["[user]", f"\tname = {agent.git.user_name}", f"\temail = {agent.git.user_email}",
             "[init]", "\tdefaultBranch = main", "[safe]", "\tdirectory = /workspace",
             "[http]", "\tsslCAInfo = /etc/ssl/certs/ca-certificates.crt"]
    return "\n".join(lines) + "\n"


def files(agent, ca_pem: str, first_time: bool = True) -> list[tuple[str, bytes, int, int]]:
    """(path, content, mode, uid) for everything provisioning writes.

    ~/.claude.json is Claude Code's own state (history, login, onboarding): it is
    seeded the first time a container is provisioned and never overwritten after."""
    agent_files = [
        # User memory: Claude Code loads it in every session, so the prompt always applies.
        (f"{HOME}/.claude/CLAUDE.md", agent.prompt.encode(), 0o644),
        (f"{HOME}/PROMPT.md", agent.prompt.encode(), 0o644),
        (f"{HOME}/.gitconfig", gitconfig(agent).encode(), 0o644),
    ]
    if first_time:
        agent_files.insert(0, (f"{HOME}/.claude.json", json.dumps(claude_state(agent), indent=2).encode(), 0o600))
    root_files = [
        (MANAGED_SETTINGS, json.dumps(claude_settings(agent), indent=2).encode(), 0o644),
        (BOTTLE_CA, ca_pem.encode(), 0o644),
        (SCRIPT, PROVISION_SH.encode(), 0o755),
    ]
    return ([(p, data, mode, AGENT_UID) for p, data, mode in agent_files]
            + [(p, data, mode, 0) for p, data, mode in root_files])


def tarball(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A tar rooted at / with each entry's owner set, for `docker cp -a`.

    Directories below the agent's home are listed explicitly so they belong to
    the agent (Claude Code writes into ~/.claude); other parents exist in the image
    or are created root-owned by the extraction, and are left alone."""
    buffer = io.BytesIO()
    now = time.time()
    listed: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data, mode, uid in entries:
            parent = path.rsplit("/", 1)[0]
            while parent.startswith(HOME + "/") and parent not in listed:
                listed.add(parent)
                info = tarfile.TarInfo(parent.lstrip("/"))
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, now
                info.uid = info.gid = AGENT_UID
                archive.addfile(info)
                parent = parent.rsplit("/", 1)[0]
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, now
            info.uid = info.gid = uid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
