"""What `provision` puts into the agent container, as one tar with exact owners and
modes, plus the two scripts `docker exec` runs. Pure: manifest data in, bytes out.

The agent owns its home and may plant links or odd files where provisioning writes
(`~/.claude` -> /etc). So nothing is extracted into the home: the tar puts the agent's
files in a root-owned staging folder, and `PLACE_SH`, run as the agent, moves them in,
replacing what is in the way instead of following it. It can only do what the agent
itself could, so a planted link never redirects a write, and provisioning succeeds."""
from __future__ import annotations

import io
import json
import tarfile
import time
from urllib.parse import urlsplit

from .plan import GITGATE_URL
from .schema import thaw
from .sidecars.gitgate.remotes import rewrites

AGENT_UID = AGENT_GID = 1000
HOME = "/home/agent"
# Managed settings outrank the user's and are root-owned: the agent cannot edit
# away the manifest's permissions (its own ~/.claude/settings.json it can).
MANAGED_SETTINGS = "/etc/claude-code/managed-settings.json"
BOTTLE_CA = "/usr/local/share/ca-certificates/bottle-ca.crt"
SCRIPT = "/opt/bottle/provision.sh"
PLACE_SCRIPT = "/opt/bottle/place.sh"
STAGED = "/opt/bottle/agent-files"  # root-owned: the agent can read, not change, what is staged
MAVEN_STAGED = "/opt/bottle/maven-settings.xml"
# What the agent's own copy of Claude Code state keeps, and what provisioning sets on top.
CLAUDE_STATE = f"{HOME}/.claude.json"

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
# A JDK (from images.packages) reads its own truststore, not the bundle above: the image's
# store plus the bottle's CAs, one keytool call per certificate (it imports only the first
# of a PEM file), split in a root-only folder (not /tmp, where the agent could plant links).
store=/etc/ssl/certs/java/cacerts
if [ -f "$store" ] && command -v keytool >/dev/null 2>&1; then
    [ -f "$store.image" ] || cp "$store" "$store.image"
    cp "$store.image" "$store.new"
    split=$(mktemp -d /opt/bottle/java.XXXXXX)
    awk -v dir="$split" '/BEGIN CERTIFICATE/ {{n++}} n > 0 {{print > (dir "/" n ".pem")}}' {BOTTLE_CA}
    for pem in "$split"/*.pem; do
        keytool -importcert -noprompt -alias "bottle-ca-${{pem##*/}}" -file "$pem" \\
            -keystore "$store.new" -storepass changeit >/dev/null
    done
    rm -rf "$split"
    chmod 644 "$store.new"
    mv "$store.new" "$store"
fi
# Maven reads no proxy variable and no JVM proxy property: its global settings name the proxy.
if [ -d /etc/maven ]; then cp {MAVEN_STAGED} /etc/maven/settings.xml; chmod 644 /etc/maven/settings.xml; fi
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
SUPERVISE_URL = "http://supervise:9100/mcp"


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
    # thawed: a server's nested env or args are frozen in the manifest and json needs plain types
    servers = {name: thaw(spec) for name, spec in agent.claude.mcp_servers.items()}
    if agent.supervise:
        servers["supervise"] = {"type": "http", "url": SUPERVISE_URL}
    if servers:
        state["mcpServers"] = servers
    return state


def gitconfig(agent) -> str:
    lines = ["[user]", f"\tname = {agent.git.user_name}", f"\temail = {agent.git.user_email}",
             "[init]", "\tdefaultBranch = main", "[safe]", "\tdirectory = /workspace",
             "[http]", "\tsslCAInfo = /etc/ssl/certs/ca-certificates.crt"]
    return "\n".join(lines + gate_rewrites(agent)) + "\n"


def gate_rewrites(agent) -> list[str]:
    """The manifest's remote URLs go to the git gate, for fetch and push (insteadOf covers
    both), and straight there: the empty proxy overrides the agent's proxy variables."""
    remotes = agent.gated_remotes
    if not remotes:
        return []
    lines = [f'[http "{GITGATE_URL}/"]', "\tproxy = "]
    for remote in remotes:
        for gate, upstream in rewrites(remote, GITGATE_URL):
            lines += [f'[url "{gate}"]', f"\tinsteadOf = {upstream}"]
    return lines


def place_script(agent_files: list[tuple[str, bytes, int]]) -> str:
    """The agent-side script: each staged file into its place in the home (run as the agent)."""
    lines = [
        "#!/bin/sh",
        "# Runs as the agent: it can touch only what the agent may. Links, directories or files",
        "# the agent put where these go are replaced, never followed. Each temporary file is new",
        "# (mktemp: a name the agent could foresee, $$, held a FIFO that blocked cp for ever).",
        "set -eu",
        "place() {  # staged file, destination, mode",
        '    parent=${2%/*}',
        f'    if [ "$parent" != "{HOME}" ]; then',
        '        if [ -L "$parent" ] || { [ -e "$parent" ] && [ ! -d "$parent" ]; }; then rm -rf "$parent"; fi',
        '        mkdir -p "$parent" && chmod 700 "$parent"',
        "    fi",
        '    if [ -L "$2" ] || [ -d "$2" ]; then rm -rf "$2"; fi',
        '    tmp=$(mktemp "$parent/.bottle-provision.XXXXXX")',
        '    cp "$1" "$tmp" && chmod "$3" "$tmp" && mv -fT "$tmp" "$2"',
        "}",
        "# Claude Code's state (login, history, projects) lives in the home volume and outlives",
        "# containers: the manifest's keys are set on top of it, the rest is kept. A file that is",
        "# not a JSON object is replaced by the staged one.",
        "merge() {  # staged JSON, destination, mode",
        '    if [ -L "$2" ] || [ -d "$2" ]; then rm -rf "$2"; fi',
        '    tmp=$(mktemp "${2%/*}/.bottle-provision.XXXXXX")',
        """    if ! { [ -f "$2" ] && jq -s '.[0] * .[1]' "$2" "$1" > "$tmp" 2>/dev/null; }; then cp "$1" "$tmp"; fi""",
        '    chmod "$3" "$tmp" && mv -fT "$tmp" "$2"',
        "}",
    ]
    lines += [f"{'merge' if path == CLAUDE_STATE else 'place'} {STAGED}{path[len(HOME):]} {path} {mode:o}"
              for path, _, mode in agent_files]
    return "\n".join(lines) + "\necho placed\n"


def maven_settings(proxy_url: str) -> str:
    """Maven's global settings: the bottle's proxy (one active proxy serves http and https)."""
    url = urlsplit(proxy_url)
    no_proxy = "|".join(("localhost", "127.0.0.1", "firewall", "egress"))
    return (f"<settings>\n  <proxies>\n    <proxy>\n      <id>bottle</id>\n      <active>true</active>\n"
            f"      <protocol>{url.scheme}</protocol>\n      <host>{url.hostname}</host>\n"
            f"      <port>{url.port}</port>\n      <nonProxyHosts>{no_proxy}</nonProxyHosts>\n"
            "    </proxy>\n  </proxies>\n</settings>\n")


def files(agent, ca_pem: str, proxy_url: str) -> list[tuple[str, bytes, int, int]]:
    """(path, content, mode, uid) for everything the tar holds: root's files in place, the
    agent's in the staging folder (placed by PLACE_SCRIPT), and the two scripts.

    ~/.claude.json is Claude Code's own state (history, login, onboarding), kept in the
    home volume across containers: PLACE_SCRIPT merges the manifest's keys into it."""
    agent_files = [
        (CLAUDE_STATE, json.dumps(claude_state(agent), indent=2).encode(), 0o600),
        # User memory: Claude Code loads it in every session, so the prompt always applies.
        (f"{HOME}/.claude/CLAUDE.md", agent.prompt.encode(), 0o644),
        (f"{HOME}/PROMPT.md", agent.prompt.encode(), 0o644),
        (f"{HOME}/.gitconfig", gitconfig(agent).encode(), 0o644),
    ]
    root_files = [
        (MANAGED_SETTINGS, json.dumps(claude_settings(agent), indent=2).encode(), 0o644),
        (MAVEN_STAGED, maven_settings(proxy_url).encode(), 0o644),
        (BOTTLE_CA, ca_pem.encode(), 0o644),
        (SCRIPT, PROVISION_SH.encode(), 0o755),
        (PLACE_SCRIPT, place_script(agent_files).encode(), 0o755),
    ]
    # Staged copies are readable by the agent (they are its files, nothing secret) and root's.
    staged = [(STAGED + path[len(HOME):], data, 0o644) for path, data, _ in agent_files]
    return [(p, data, mode, 0) for p, data, mode in staged + root_files]


def tarball(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A tar rooted at / with each entry's owner set, for `docker cp -` (which keeps them). Parents exist in
    the image or are created root-owned by the extraction, and are left alone."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data, mode, uid in entries:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, now
            info.uid = info.gid = uid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
