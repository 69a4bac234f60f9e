"""Which workspace files are credentials, so they stay out of the bottle.

Two tests. By name: the files people keep next to their code, usually git-ignored
but not always (`.env*`, `*.pem`, SSH keys, cloud CLI credentials, token-holding
`.npmrc`/`.pypirc`). By content: the firewall's own DLP rules (`sidecars/firewall/dlp.py`,
imported read-only) run over the head of every other file, so a key pasted into a
README is caught by the same shapes that would stop it leaving over the network.

The content scan is bounded: only the first MAX_SCAN_BYTES of a file are read for it
(a secret further down a large file is not seen; the name rules still apply), and of a
binary file only its runs of printable text (`printable`). That keeps the first launch of
a large workspace near the speed of the copy itself.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import re2

from ..sidecars.firewall import dlp
from ..sidecars.firewall.patterns import compile_pattern

MAX_SCAN_BYTES = 1 << 20  # 1 MiB of each file's head
# Committed templates, not secrets: their contents are still scanned.
ENV_TEMPLATES = (".example", ".sample", ".template", ".dist", ".defaults")
KEY_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".ppk")
SSH_KEY = re.compile(r"id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?(?:[-_.].*)?")
PLAIN_NAMES = {
    ".netrc": "login credentials (.netrc)", "_netrc": "login credentials (.netrc)",
    ".git-credentials": "git credentials (.git-credentials)",
    ".pgpass": "database passwords (.pgpass)",
    "application_default_credentials.json": "Google Cloud credentials",
    "credentials.db": "Google Cloud credentials", "access_tokens.db": "Google Cloud credentials",
    "accessTokens.json": "Azure CLI tokens", "msal_token_cache.json": "Azure CLI tokens",
    "msal_token_cache.bin": "Azure CLI tokens", "service_principal_entries.json": "Azure CLI credentials",
    "credentials.tfrc.json": "Terraform credentials", "kubeconfig": "Kubernetes credentials (kubeconfig)",
}
# name -> (what, marker): the file is a credential only when it holds the marker (a small read).
TOKEN_FILES = {
    ".npmrc": ("an .npmrc holding a token", re.compile(rb"_auth(?:Token)?\s*=|_password\s*=")),
    ".yarnrc.yml": ("a .yarnrc.yml holding a token", re.compile(rb"npmAuth(?:Token|Ident)\s*:")),
    ".pypirc": ("a .pypirc holding a password", re.compile(rb"(?m)^\s*password\s*[=:]")),
}
TOKEN_FILE_BYTES = 64 * 1024
# RE2: over random bytes (a binary asset's head) six times faster than `re` (2 ms a MiB, not 14).
PRINTABLE_RUN = re2.compile(rb"[\x20-\x7e\t]{8,}")


def by_name(rel: str) -> str | None:
    """Why the path `rel` (posix, relative to the workspace) names a credential file, or None."""
    path = PurePosixPath(rel)
    name, parts = path.name, path.parts[:-1]
    if name.startswith(".env") and not name.endswith(ENV_TEMPLATES):
        return "credential file name (.env*)"
    if name.endswith(KEY_SUFFIXES):
        return f"key or certificate file (*{path.suffix})"
    if SSH_KEY.fullmatch(name) and not name.endswith(".pub"):
        return "SSH private key name (id_*)"
    if name in PLAIN_NAMES:
        return PLAIN_NAMES[name]
    if ".aws" in parts and name != "config":
        return "AWS credentials (.aws/)"
    if "legacy_credentials" in parts or ("gcloud" in parts and name.endswith(".json") and "credential" in name):
        return "Google Cloud credentials"
    if ".kube" in parts and name == "config":
        return "Kubernetes credentials (.kube/config)"
    if name == "config.json" and ".docker" in parts:
        return "Docker registry credentials (.docker/config.json)"
    if name == "credentials" and (".gem" in parts or ".cargo" in parts):
        return f"registry credentials ({parts[-1]}/credentials)"
    if name == "credentials.toml" and ".cargo" in parts:
        return "registry credentials (.cargo/credentials.toml)"
    if name == "hosts.yml" and "gh" in parts:
        return "GitHub CLI token (gh/hosts.yml)"
    return None


def by_token(rel: str, head: bytes) -> str | None:
    """Why a token-holding config file (`.npmrc`, ...) is a credential, given its first bytes."""
    rule = TOKEN_FILES.get(PurePosixPath(rel).name)
    if rule and rule[1].search(head):
        return rule[0]
    return None


# In git's config: `url = https://user:password@host/...` (no DLP rule knows a password's
# shape), or `extraheader = AUTHORIZATION: basic ...` (actions/checkout leaves one, base64).
GIT_CONFIG_CREDENTIAL = re2.compile(rb"(?im)^\s*(?:url|pushurl)\s*=\s*\S*://[^/@\s]*:[^/@\s]+@|^\s*extraheader\s*=")


class ContentScan:
    """The firewall's DLP rules (and the agent's own `network.dlp.patterns`) over file heads."""

    def __init__(self, patterns=()):
        extra = [dlp.Rule(p.name, compile_pattern(p.regex), f"a match for the DLP pattern {p.name!r}")
                 for p in patterns]
        self._scanner = dlp.Scanner([*dlp.BUILTIN_RULES, *extra])

    def finding(self, head: bytes, git_config: bool = False) -> str | None:
        """What the head of a file holds that a DLP rule recognises (never the match itself);
        `git_config`: also a password in a URL or an http.extraheader (git's config files)."""
        if git_config and GIT_CONFIG_CREDENTIAL.search(head):
            return "holds a credential (a password in a URL, or an http.extraheader)"
        found = self._scanner.scan_body(printable(head))
        return f"contains {found[0].what}" if found else None


def printable(head: bytes) -> bytes:
    """A binary file (a NUL in its first 8000 bytes, git's test) is scanned as `strings` sees
    it: its runs of printable text, where a token would be. Whole, random bytes cost the
    scanner's URL-decoding some 0.3 s per MiB for nothing; the runs, a few ms."""
    if b"\0" not in head[:8000]:
        return head
    return b"\n".join(PRINTABLE_RUN.findall(head))


def fingerprint(patterns=()) -> bytes:
    """What the rules are, for the workspace image's tag: changed rules (or a changed history
    scan, history.py), a new image."""
    here = Path(__file__)
    sources = here.read_bytes() + here.with_name("history.py").read_bytes() + Path(dlp.__file__).read_bytes()
    return sources + repr([(p.name, p.regex) for p in patterns]).encode()
