"""The starter manifest `bottle init` writes: the model's API host with its credential
route, plus the package registries the project visibly uses, each with a comment that
says why it is there. Pure: a folder in, text out (the task writes it)."""
from __future__ import annotations

from pathlib import Path

from .project import slug_for

# (marker files or globs, ecosystem, hosts its package manager fetches from)
REGISTRIES = (
    (("package.json",), "npm (package.json)", ("registry.npmjs.org",)),
    (("pyproject.toml", "requirements*.txt", "setup.py", "setup.cfg", "Pipfile"), "PyPI (Python packaging files)",
     ("pypi.org", "files.pythonhosted.org")),
    (("go.mod",), "Go modules (go.mod)", ("proxy.golang.org", "sum.golang.org")),
    (("Cargo.toml",), "crates.io (Cargo.toml)", ("index.crates.io", "static.crates.io", "crates.io")),
    (("Gemfile",), "RubyGems (Gemfile)", ("rubygems.org", "index.rubygems.org")),
    (("composer.json",), "Packagist (composer.json)", ("repo.packagist.org",)),
    (("pom.xml", "build.gradle", "build.gradle.kts"), "Maven Central (Maven/Gradle build files)",
     ("repo.maven.apache.org", "repo1.maven.org")),
)


def registries(folder: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(ecosystem, hosts) for each package ecosystem whose files sit at the project's top level."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for markers, ecosystem, hosts in REGISTRIES:
        if any(next(folder.glob(marker), None) for marker in markers):
            found.append((ecosystem, hosts))
    return found


def render(folder: Path) -> str:
    """The commented starter manifest for the project in `folder`."""
    name = slug_for(folder)
    registry_lines = []
    for ecosystem, hosts in registries(folder):
        registry_lines.append(f"        # {ecosystem}")
        registry_lines += [f"        - {host}" for host in hosts]
    registries_text = "\n".join(registry_lines) if registry_lines else \
        "        # no package manager files found; add registry hosts here (e.g. pypi.org)"
    return TEMPLATE.format(name=name, registries=registries_text)


TEMPLATE = """\
# bottle's manifest for this project, written by `bottle init`. Every field is
# explained in bottle's config/example.yaml; unknown keys are errors.
#
#   ANTHROPIC_API_KEY=sk-ant-... bottle launch   # build, start, provision
#   bottle claude                                # work with the agent
#   bottle pull                                  # its work, as branch bottle/{name}
#   bottle down                                  # remove the bottle
version: 1

# Behind a TLS-intercepting proxy, image builds and the firewall must trust its CA:
# trust:
#   extra_ca_bundle: /etc/ssl/certs/ca-certificates.crt

agents:
  {name}:                       # also the bottle's name; `bottle use NAME` picks another agent
    # What the agent is asked to do; "" is an interactive session (`bottle claude`).
    prompt: ""

    # The agent works on a copy of this folder, git history included (the default
    # for a project's bottle.yaml; `workspace: null` for an empty one). Your files
    # are never mounted: `bottle pull` brings its work back as a branch.

    # NAMES of variables read from your shell at launch. The agent never sees the
    # values: the egress proxy injects them into the requests routed below.
    secrets: [ANTHROPIC_API_KEY]

    network:                    # everything not listed here is refused
      allow:
        # the model
        - api.anthropic.com
{registries}
      dlp:
        # The model is sent whatever the agent read: warn there instead of blocking.
        hosts: {{api.anthropic.com: warn}}
        # Long conversations send request bodies of several MiB to the model.
        max_body_bytes: 16777216

    egress_proxy:
      routes:
        # Claude Code calls /v1/messages and /api/claude_code/{{settings,policy_limits}}.
        - host: api.anthropic.com
          paths: [/v1/, /api/claude_code/]
          methods: [GET, POST]
          inject: [{{header: x-api-key, secret: ANTHROPIC_API_KEY}}]
          # With a Claude subscription instead of an API key: list
          # CLAUDE_CODE_OAUTH_TOKEN in `secrets` and inject it as a bearer token:
          # inject: [{{header: Authorization, secret: CLAUDE_CODE_OAUTH_TOKEN, format: "Bearer {{secret}}"}}]
"""
