"""bottle_tasks.manifest: the shipped manifests load, and every bad document fails
with an error that names the field and says how to fix it."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from bottle_tasks.manifest import ManifestError, load, thaw

CONFIG = Path(__file__).resolve().parents[2] / "config"


def agent(body: str, top: str = "") -> str:
    """A YAML manifest whose one agent `demo` has the fields in `body`."""
    return top + "agents:\n  demo:\n" + textwrap.indent(textwrap.dedent(body), "    ")


def md(front: str, body: str = "Do the work.\n") -> str:
    return f"---\n{textwrap.dedent(front)}---\n{body}"


API = """\
secrets: [ANTHROPIC_API_KEY]
network: {allow: [api.anthropic.com]}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a")
    (tmp_path / "ca-and-key.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                                            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- good documents -------------------------------------------------------------

@pytest.mark.parametrize("name", ["bottles.yaml", "example.yaml", "reviewer.md"])
def test_shipped_manifests_load(name):
    manifest = load(CONFIG / name)
    assert manifest.agents
    for a in manifest.agents.values():
        assert a.prompt
        for route in a.routes:
            assert route.host in a.network.allow
            assert all(i.secret in a.secrets for i in route.inject)


def test_demo_is_the_default_agent_shape():
    demo = load(CONFIG / "bottles.yaml").agents["demo"]
    assert demo.workspace is None
    assert {"registry.npmjs.org", "pypi.org", "files.pythonhosted.org"} <= set(demo.network.allow)
    assert load(CONFIG / "bottles.yaml").trust.extra_ca_bundle == "/etc/ssl/certs/ca-certificates.crt"
    assert len(load(CONFIG / "bottles.yaml").agents) >= 2


def test_markdown_body_is_the_prompt_and_stem_the_name():
    manifest = load(CONFIG / "reviewer.md")
    reviewer = manifest.agents["reviewer"]
    assert reviewer.prompt.startswith("# Code review")
    assert reviewer.workspace and Path(reviewer.workspace.path) == CONFIG.parent


def test_markdown_name_key_overrides_the_stem(folder):
    manifest = load(write(folder, "notes.md", md("name: helper\n", body="\n  Hello.\n\n")))
    assert list(manifest.agents) == ["helper"] and manifest.agents["helper"].prompt == "Hello."


def test_defaults_and_normalisation(folder):
    path = write(folder, "m.yaml", agent("""\
        secrets: [TOKEN]
        workspace: {path: src}
        resources: {memory: 512M}
        network:
          allow: [API.Example.com., "*.pypi.org"]
          passthrough: [files.pypi.org]
          allowed_cidrs: [10.1.0.0/16]
          dlp: {action: off, hosts: {api.example.com: warn}}
        egress_proxy:
          routes:
            - host: api.example.com
              methods: [get, Post]
              inject: [{header: Authorization, secret: TOKEN, format: "Bearer {secret}"}]
        """, top="trust: {extra_ca_bundle: ca.pem}\n"))
    manifest = load(path)
    demo = manifest.agents["demo"]
    assert manifest.path == str(path)
    assert manifest.trust.extra_ca_bundle == str(folder / "ca.pem")
    assert manifest.images.base == "debian:bookworm-slim" and manifest.images.packages == ()
    assert demo.workspace.path == str(folder / "src") and demo.workspace.copy is True
    assert demo.resources.memory == "512m" and demo.resources.cpus == 2.0 and demo.resources.pids == 512
    assert demo.network.allow == ("api.example.com", "*.pypi.org")
    assert demo.network.allowed_cidrs == ("10.1.0.0/16",)
    assert demo.network.dlp.action == "off"          # not YAML 1.1's False
    assert demo.routes[0].paths == ("/",)
    assert demo.routes[0].methods == ("GET", "POST")
    assert demo.routes[0].port is None  # the web ports, as the plain allowlist entry
    assert demo.supervise is None and demo.runtime == "runc"


def test_a_route_on_one_port_needs_that_port_allowed_and_serves_it_alone(folder):
    path = write(folder, "m.yaml", agent("""\
        network: {allow: [api.example.com, "api.example.com:8443"]}
        egress_proxy:
          routes:
            - {host: "API.example.com:8443", paths: [/admin/]}
            - {host: "api.example.com:443"}
        """))
    one, web = load(path).agents["demo"].routes
    assert (one.host, one.port, one.paths) == ("api.example.com", 8443, ("/admin/",))
    assert one.to_json()["port"] == 8443 and one.serves(8443) and not one.serves(443)
    assert (web.host, web.port) == ("api.example.com", 443)  # allowed by the plain entry


def test_model_is_read_only(folder):
    path = write(folder, "m.yaml", agent("""\
        env: {A: b}
        claude: {mcp_servers: {files: {command: npx, args: [-y, server]}}}
        """))
    demo = load(path).agents["demo"]
    with pytest.raises(AttributeError):
        demo.name = "other"
    with pytest.raises(TypeError):
        demo.env["A"] = "c"
    assert json.loads(json.dumps(thaw(demo.claude.mcp_servers))) == {"files": {"command": "npx", "args": ["-y", "server"]}}


# --- errors with their exact shape ---------------------------------------------------

def test_error_string_is_path_field_problem_fix(folder):
    path = write(folder, "m.yaml", agent("network: {allow: [pypi.org, ok.org, 'bad host']}"))
    with pytest.raises(ManifestError) as caught:
        load(path)
    err = caught.value
    assert err.path == str(path)
    assert err.field == "agents.demo.network.allow[2]"
    assert str(err) == f"{path}: agents.demo.network.allow[2]: {err.message}"
    assert " — " in err.message


def test_missing_file_says_how_to_point_elsewhere(folder):
    with pytest.raises(ManifestError) as caught:
        load(folder / "nope.yaml")
    assert "not found" in str(caught.value)
    assert "INVOKE_BOTTLE_MANIFEST=" in str(caught.value) and "inv use NAME --manifest FILE" in str(caught.value)


def test_an_unknown_agent_names_the_ones_there_are(state_home):
    from invoke import Config, MockContext

    from bottle_tasks.errors import BottleError
    from bottle_tasks.selection import current

    c = MockContext(config=Config(overrides={"bottle": {"agent": "nobody", "manifest": str(CONFIG / "bottles.yaml")}}))
    with pytest.raises(BottleError) as caught:
        current(c)
    assert "agents: no agent named 'nobody'" in caught.value.message
    assert "demo" in caught.value.detail and "reviewer" in caught.value.detail


# --- the table of bad documents -----------------------------------------------------
# (id, file name, text, exact field path, fragment of the message's fix)

ROUTE = API + """\
egress_proxy:
  routes:
    - host: api.anthropic.com
      {extra}
"""


def route(extra: str) -> str:
    return agent(ROUTE.replace("{extra}", extra))


BAD = [
    # unknown keys at every level
    ("typo-top", "m.yaml", "agnets: {}\n", "agnets", "did you mean 'agents'"),
    ("typo-agent", "m.yaml", agent("netwrok: {}\n"), "agents.demo.netwrok", "did you mean 'network'"),
    ("typo-network", "m.yaml", agent("network: {alow: [pypi.org]}\n"), "agents.demo.network.alow",
     "did you mean 'allow'"),
    ("typo-dlp", "m.yaml", agent("network: {dlp: {acton: warn}}\n"), "agents.demo.network.dlp.acton",
     "did you mean 'action'"),
    ("typo-dlp-pattern", "m.yaml", agent("network: {dlp: {patterns: [{name: a, regexp: b}]}}\n"),
     "agents.demo.network.dlp.patterns[0].regexp", "did you mean 'regex'"),
    ("typo-route", "m.yaml", agent(API + "egress_proxy: {routes: [{hots: api.anthropic.com}]}\n"),
     "agents.demo.egress_proxy.routes[0].hots", "did you mean 'host'"),
    ("typo-egress", "m.yaml", agent("egress_proxy: {route: []}\n"), "agents.demo.egress_proxy.route",
     "did you mean 'routes'"),
    ("typo-inject", "m.yaml", route("inject: [{header: x-api-key, secert: ANTHROPIC_API_KEY}]"),
     "agents.demo.egress_proxy.routes[0].inject[0].secert", "did you mean 'secret'"),
    ("typo-resources", "m.yaml", agent("resources: {memroy: 2g}\n"), "agents.demo.resources.memroy",
     "did you mean 'memory'"),
    ("typo-trust", "m.yaml", "trust: {extra_ca: ca.pem}\n" + agent("{}\n"), "trust.extra_ca",
     "allowed keys here: extra_ca_bundle"),
    ("typo-images", "m.yaml", "images: {proxybase: x}\n" + agent("{}\n"), "images.proxybase",
     "did you mean 'proxy_base'"),
    ("images-packages-string", "m.yaml", "images: {packages: golang}\n" + agent("{}\n"), "images.packages",
     "write a list"),
    ("images-packages-version", "m.yaml", "images: {packages: [golang, 'openjdk-17=17.0.1']}\n" + agent("{}\n"),
     "images.packages[1]", "no version or release"),
    ("images-packages-option", "m.yaml", "images: {packages: ['--allow-unauthenticated']}\n" + agent("{}\n"),
     "images.packages[0]", "the bare package name"),
    ("images-packages-shell", "m.yaml", "images: {packages: ['vim; curl x']}\n" + agent("{}\n"),
     "images.packages[0]", "the bare package name"),
    ("typo-claude-perms", "m.yaml", agent("claude: {permissions: {alow: [Read]}}\n"),
     "agents.demo.claude.permissions.alow", "did you mean 'allow'"),
    ("typo-workspace", "m.yaml", agent("workspace: {path: src, cpy: false}\n"), "agents.demo.workspace.cpy",
     "did you mean 'copy'"),
    ("typo-git", "m.yaml", agent("git: {user: me}\n"), "agents.demo.git.user", "allowed keys here: user_name"),
    ("typo-supervise", "m.yaml", agent("supervise: {enable: true}\n"), "agents.demo.supervise.enable",
     "did you mean 'enabled'"),
    ("supervise-timeout-long", "m.yaml", agent("supervise: {enabled: true, timeout: 86400}\n"),
     "agents.demo.supervise.timeout", "minutes, not hours"),
    ("supervise-timeout-short", "m.yaml", agent("supervise: {enabled: true, timeout: 1}\n"),
     "agents.demo.supervise.timeout", "at least 5"),
    ("never-allowed", "m.yaml", agent("network: {allow: ['*.example.org'], never: [x.example.org]}\n"),
     "agents.demo.network.allow[0]", "network.never forbids"),
    ("never-remote", "m.yaml", agent("network: {never: ['*.example.com']}\n"
                                     "git: {remotes: {origin: 'https://git.example.com/o/r.git'}}\n"),
     "agents.demo.git.remotes.origin", "network.never forbids"),
    ("remote-ipv6", "m.yaml", agent("git: {remotes: {origin: 'https://[::1]/o/r.git'}}\n"),
     "agents.demo.git.remotes.origin.url", "write the host's name"),
    ("remote-single-label", "m.yaml", agent("git: {remotes: {origin: 'https://firewall/o/r.git'}}\n"),
     "agents.demo.git.remotes.origin.url", "single-label"),
    ("remote-port-0", "m.yaml", agent("git: {remotes: {origin: 'https://git.example.com:0/o/r.git'}}\n"),
     "agents.demo.git.remotes.origin.url", "from 1 to 65535"),
    ("mcp-date", "m.yaml", agent("claude: {mcp_servers: {x: {command: y, args: [--since, 2024-01-01]}}}\n"),
     "agents.demo.claude.mcp_servers.x.args[1]", 'quote it: "2024-01-01"'),
    ("mcp-nan", "m.yaml", agent("claude: {mcp_servers: {x: {timeout: .nan}}}\n"),
     "agents.demo.claude.mcp_servers.x.timeout", "finite number"),
    ("env-newline", "m.yaml", agent('env: {A: "x\\nB=y"}\n'), "agents.demo.env.A", "write it on one line"),
    ("env-nul", "m.yaml", agent('env: {A: "x\\0y"}\n'), "agents.demo.env.A", "control character"),
    ("allow-twice", "m.yaml", agent("network: {allow: [pypi.org, PyPI.org.]}\n"), "agents.demo.network.allow[1]",
     "listed already, at agents.demo.network.allow[0]"),
    ("passthrough-twice", "m.yaml", agent("network: {allow: [a.com], passthrough: [a.com, A.com]}\n"),
     "agents.demo.network.passthrough[1]", "keep one of the two"),
    ("dlp-host-twice", "m.yaml", agent("network: {allow: [x.com], dlp: {hosts: {x.com: block, X.com: 'off'}}}\n"),
     "agents.demo.network.dlp.hosts['X.com']", "DLP override already"),
    ("idle-huge", "m.yaml", agent("network: {idle_timeout: 604801}\n"), "agents.demo.network.idle_timeout",
     "at most 604800"),
    ("supervise-not-enabled", "m.yaml", agent("supervise: {timeout: 60}\n"), "agents.demo.supervise.enabled",
     "add `enabled: true`"),
    ("never-url", "m.yaml", agent("network: {never: ['https://evil.example/']}\n"),
     "agents.demo.network.never[0]", "not a bare host name"),
    # document level
    ("version", "m.yaml", "version: 2\n" + agent("{}\n"), "version", "write `version: 1`"),
    ("no-agents", "m.yaml", "version: 1\n", "agents", "add at least one agent"),
    ("agent-name", "m.yaml", "agents: {Demo_1: {}}\n", "agents.Demo_1", "lower-case letters"),
    ("yaml-syntax", "m.yaml", "agents:\n  demo:\n    prompt: [unclosed\n", "line 4", "fix the YAML at that line"),
    ("yaml-duplicate", "m.yaml", agent("network: {}\nnetwork: {}\n"), "line 4", "keep one of the two"),
    ("extension", "m.json", "{}", "(file)", "use a .yaml/.yml manifest or a .md file"),
    ("ca-missing", "m.yaml", "trust: {extra_ca_bundle: nope.pem}\n" + agent("{}\n"), "trust.extra_ca_bundle",
     "relative to the manifest's folder"),
    ("ca-not-pem", "m.yaml", "trust: {extra_ca_bundle: ca.der}\n" + agent("{}\n"), "trust.extra_ca_bundle",
     "-----BEGIN CERTIFICATE-----"),
    ("ca-folder", "m.yaml", "trust: {extra_ca_bundle: src}\n" + agent("{}\n"), "trust.extra_ca_bundle",
     "not a plain file"),
    ("ca-with-key", "m.yaml", "trust: {extra_ca_bundle: ca-and-key.pem}\n" + agent("{}\n"), "trust.extra_ca_bundle",
     "a file of the certificates alone"),
    ("ca-link-loop", "m.yaml", "trust: {extra_ca_bundle: loop/ca.pem}\n" + agent("{}\n"), "(file)", "fix the link"),
    ("yaml-merge-key", "m.yaml", agent("<<: {network: {never: [x.example.org]}}\nnetwork: {allow: [pypi.org]}\n"),
     "line 3", "merge key"),
    ("yaml-huge-int", "m.yaml", agent("resources: {pids: 1" + "0" * 5000 + "}\n"), "(yaml)", "quote it"),
    # types
    ("allow-not-list", "m.yaml", agent("network: {allow: pypi.org}\n"), "agents.demo.network.allow",
     "write a list"),
    ("copy-not-bool", "m.yaml", agent("workspace: {path: src, copy: yes}\n"), "agents.demo.workspace.copy",
     "write true or false"),
    ("idle-bool", "m.yaml", agent("network: {idle_timeout: true}\n"), "agents.demo.network.idle_timeout",
     "write a number >= 1"),
    # hostile documents: bounded work, a field error each
    ("alias-bomb", "m.yaml", agent("claude:\n  mcp_servers:\n    a: &a [x, x, x, x, x, x, x, x, x]\n"
                                   "    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                   "    c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"), "line 6", "aliases are not accepted"),
    ("deep-nesting", "m.yaml", agent("claude: {mcp_servers: {x: " + "[" * 500 + "]" * 500 + "}}\n"), "line 3",
     "nested more than"),
    ("huge-file", "m.yaml", agent("prompt: |\n" + ("  " + "x" * 100 + "\n") * 12000), "(file)", "KiB"),
    ("cpus-inf", "m.yaml", agent("resources: {cpus: .inf}\n"), "agents.demo.resources.cpus", "at most"),
    ("cpus-nan", "m.yaml", agent("resources: {cpus: .nan}\n"), "agents.demo.resources.cpus", "at most"),
    ("gitconfig-newline", "m.yaml", agent('git: {user_name: "agent\\n[core]\\n\\tpager = evil"}\n'),
     "agents.demo.git.user_name", "line break"),
    ("dlp-name-builtin", "m.yaml", agent("network: {dlp: {patterns: [{name: aws-access-key-id, regex: abc}]}}\n"),
     "agents.demo.network.dlp.patterns[0].name", "already the name of another rule"),
    ("dlp-name-twice", "m.yaml", agent("network: {dlp: {patterns: [{name: a, regex: abc}, {name: a, regex: xyz}]}}\n"),
     "agents.demo.network.dlp.patterns[1].name", "already the name of another rule"),
    ("dlp-name-bad", "m.yaml", agent("network: {dlp: {patterns: [{name: Bad Name, regex: abc}]}}\n"),
     "agents.demo.network.dlp.patterns[0].name", "not a rule name"),
    ("dlp-empty-match", "m.yaml", agent("network: {dlp: {patterns: [{name: a, regex: 'x*'}]}}\n"),
     "agents.demo.network.dlp.patterns[0].regex", "empty string"),
    ("dlp-body-huge", "m.yaml", agent("network: {dlp: {max_body_bytes: 33554433}}\n"),
     "agents.demo.network.dlp.max_body_bytes", "32 MiB"),
    ("allow-firewall", "m.yaml", agent("network: {allow: [firewall]}\n"), "agents.demo.network.allow[0]",
     "single-label"),
    ("allow-localhost", "m.yaml", agent("network: {allow: [localhost]}\n"), "agents.demo.network.allow[0]",
     "single-label"),
    # hosts
    ("host-empty", "m.yaml", agent("network: {allow: ['']}\n"), "agents.demo.network.allow[0]",
     "give a value"),
    ("host-scheme", "m.yaml", agent("network: {allow: ['https://pypi.org/simple']}\n"),
     "agents.demo.network.allow[0]", "without scheme or path"),
    ("host-bad-port", "m.yaml", agent("network: {allow: ['pypi.org:99999']}\n"),
     "agents.demo.network.allow[0]", "from 1 to 65535"),
    ("port-outside-allow", "m.yaml", agent("network: {allow: [a.com], passthrough: ['a.com:22']}\n"),
     "agents.demo.network.passthrough[0]", "without scheme, port or path"),
    ("dlp-pattern-backtracking", "m.yaml",
     agent("network: {dlp: {patterns: [{name: x, regex: '(?<=a)b'}]}}\n"),
     "agents.demo.network.dlp.patterns[0].regex", "RE2 cannot compile it"),
    ("host-mid-wildcard", "m.yaml", agent("network: {allow: [pypi.org, 'files.*.org']}\n"),
     "agents.demo.network.allow[1]", "only as a leading '*.'"),
    ("host-star", "m.yaml", agent("network: {allow: ['*']}\n"), "agents.demo.network.allow[0]",
     "only as a leading '*.'"),
    ("host-tld-wildcard", "m.yaml", agent("network: {allow: ['*.com']}\n"), "agents.demo.network.allow[0]",
     "narrow the wildcard"),
    ("passthrough-not-allowed", "m.yaml", agent("network: {allow: [pypi.org], passthrough: [evil.org]}\n"),
     "agents.demo.network.passthrough[0]", "add 'evil.org' to network.allow"),
    ("route-to-passthrough", "m.yaml",
     agent("network: {allow: ['*.example.com'], passthrough: ['*.example.com']}\n"
           "egress_proxy: {routes: [{host: api.example.com, inject: [{header: x-key, secret: K}]}]}\nsecrets: [K]\n"),
     "agents.demo.egress_proxy.routes[0].host", "take the host out of network.passthrough, or drop the route"),
    ("cidr", "m.yaml", agent("network: {allowed_cidrs: [10.0.0.300/8]}\n"), "agents.demo.network.allowed_cidrs[0]",
     "address range such as 10.20.0.0/16"),
    ("cidr-host-bits", "m.yaml", agent("network: {allowed_cidrs: [10.0.0.1/8]}\n"),
     "agents.demo.network.allowed_cidrs[0]", "write the range as 10.0.0.0/8"),
    ("cidr-public-half", "m.yaml", agent("network: {allowed_cidrs: [0.0.0.0/1]}\n"),
     "agents.demo.network.allowed_cidrs[0]", "public addresses need no entry here"),
    ("cidr-public", "m.yaml", agent("network: {allowed_cidrs: [8.8.8.0/24]}\n"),
     "agents.demo.network.allowed_cidrs[0]", "not a private range"),
    # DLP
    ("dlp-action", "m.yaml", agent("network: {dlp: {action: deny}}\n"), "agents.demo.network.dlp.action",
     "write one of: block, warn, off"),
    ("dlp-host-action", "m.yaml", agent(API.replace("}", ", dlp: {hosts: {api.anthropic.com: allow}}}")),
     "agents.demo.network.dlp.hosts['api.anthropic.com']", "write one of: block, warn, off"),
    ("dlp-host-not-allowed", "m.yaml", agent("network: {dlp: {hosts: {api.antropic.com: off}}}\n"),
     "agents.demo.network.dlp.hosts['api.antropic.com']", "likely a typo"),
    ("dlp-regex", "m.yaml", agent("network: {dlp: {patterns: [{name: a, regex: 'tok_(['}]}}\n"),
     "agents.demo.network.dlp.patterns[0].regex", "write an RE2 regular expression"),
    # routes
    ("route-not-allowed", "m.yaml", agent("egress_proxy: {routes: [{host: api.anthropic.com}]}\n"),
     "agents.demo.egress_proxy.routes[0].host", "add 'api.anthropic.com' to network.allow"),
    ("route-port-not-allowed", "m.yaml", agent(API + "egress_proxy: {routes: [{host: 'api.anthropic.com:8443'}]}\n"),
     "agents.demo.egress_proxy.routes[0].host", "add 'api.anthropic.com:8443' to network.allow"),
    ("route-port-out-of-range", "m.yaml", agent(API + "egress_proxy: {routes: [{host: 'api.anthropic.com:0'}]}\n"),
     "agents.demo.egress_proxy.routes[0].host", "a number from 1 to 65535"),
    ("route-wildcard", "m.yaml", agent("network: {allow: ['*.example.com']}\n"
                                       "egress_proxy: {routes: [{host: '*.example.com'}]}\n"),
     "agents.demo.egress_proxy.routes[0].host", "one exact host name"),
    ("route-method", "m.yaml", route("methods: [GET, FETCH]"), "agents.demo.egress_proxy.routes[0].methods[1]",
     "use one of: GET"),
    ("route-path", "m.yaml", route("paths: [v1/]"), "agents.demo.egress_proxy.routes[0].paths[0]",
     "write it as '/v1/'"),
    ("inject-secret-unlisted", "m.yaml", route("inject: [{header: x-api-key, secret: OTHER_KEY}]"),
     "agents.demo.egress_proxy.routes[0].inject[0].secret", "add 'OTHER_KEY' to the agent's `secrets:`"),
    ("inject-header", "m.yaml", route("inject: [{header: 'x api key', secret: ANTHROPIC_API_KEY}]"),
     "agents.demo.egress_proxy.routes[0].inject[0].header", "letters, digits and '-'"),
    ("inject-format", "m.yaml", route("inject: [{header: authorization, secret: ANTHROPIC_API_KEY, "
                                      "format: 'Bearer {token}'}]"),
     "agents.demo.egress_proxy.routes[0].inject[0].format", 'e.g. "Bearer {secret}"'),
    # resources, runtime, env, secrets, git, claude
    ("memory", "m.yaml", agent("resources: {memory: 2GB}\n"), "agents.demo.resources.memory", "512m or 2g"),
    ("cpus", "m.yaml", agent("resources: {cpus: 0}\n"), "agents.demo.resources.cpus", "positive number"),
    ("pids", "m.yaml", agent("resources: {pids: 8}\n"), "agents.demo.resources.pids", "number >= 16"),
    ("runtime", "m.yaml", agent("runtime: kata\n"), "agents.demo.runtime", "write one of: runc, runsc"),
    ("env-key", "m.yaml", agent("env: {1BAD: x}\n"), "agents.demo.env.1BAD", "not starting with a digit"),
    ("env-value", "m.yaml", agent("env: {PORT: 8080}\n"), "agents.demo.env.PORT", 'quote it: PORT: "8080"'),
    ("env-is-secret", "m.yaml", agent("secrets: [TOKEN]\nenv: {TOKEN: abc}\n"), "agents.demo.env.TOKEN",
     "remove it from env"),
    ("secret-name", "m.yaml", agent("secrets: [sk-ant-api03-xyz]\n"), "agents.demo.secrets[0]", "never its value"),
    ("secret-twice", "m.yaml", agent("secrets: [A, A]\n"), "agents.demo.secrets[1]", "remove the duplicate"),
    ("git-email", "m.yaml", agent("git: {user_email: nobody}\n"), "agents.demo.git.user_email",
     "agent@bottle.invalid"),
    ("mcp-not-mapping", "m.yaml", agent("claude: {mcp_servers: {files: npx}}\n"),
     "agents.demo.claude.mcp_servers.files", "indented under the key"),
    ("workspace-missing", "m.yaml", agent("workspace: {path: no-such-dir}\n"), "agents.demo.workspace.path",
     "relative to the manifest's folder"),
    ("workspace-no-path", "m.yaml", agent("workspace: {copy: true}\n"), "agents.demo.workspace.path",
     "`workspace: null`"),
    ("workspace-include-string", "m.yaml", agent("workspace: {path: src, include: dist/}\n"),
     "agents.demo.workspace.include", "write a list"),
    ("workspace-include-negated", "m.yaml", agent("workspace: {path: src, include: ['!dist/']}\n"),
     "agents.demo.workspace.include[0]", "list only what to bring in"),
    ("workspace-include-outside", "m.yaml", agent("workspace: {path: src, include: [../secrets/*]}\n"),
     "agents.demo.workspace.include[0]", "relative to the workspace folder"),
    ("workspace-include-bad", "m.yaml", agent("workspace: {path: src, include: ['x\\']}\n"),
     "agents.demo.workspace.include[0]", "as in .gitignore"),
    ("typo-workspace-include", "m.yaml", agent("workspace: {path: src, includes: [dist/]}\n"),
     "agents.demo.workspace.includes", "did you mean 'include'"),
    # the legacy cred_proxy key
    ("cred-proxy", "m.yaml", agent("cred_proxy: {host: api.anthropic.com, header: x-api-key, "
                                   "secret: ANTHROPIC_API_KEY}\n"),
     "agents.demo.cred_proxy", "- host: api.anthropic.com"),
    ("cred-proxy-list", "m.yaml", agent("cred_proxy:\n  - {host: a.example.com, header: h, secret: A}\n"
                                        "  - {host: b.example.com, header: h, secret: B}\n"),
     "agents.demo.cred_proxy", "- host: b.example.com"),
    ("cred-proxy-top", "m.yaml", "cred_proxy: {host: api.anthropic.com}\n" + agent("{}\n"), "cred_proxy",
     "egress_proxy.routes (under agents.NAME)"),
    # Markdown specifics
    ("md-prompt-key", "r.md", md("prompt: hi\n"), "prompt", "below the closing '---'"),
    ("md-no-front-matter", "r.md", "# Just a prompt\n", "(front matter)", "between two '---' lines"),
    ("md-unclosed", "r.md", "---\nruntime: runc\n\nDo it.\n", "(front matter)", "close the YAML fields"),
    ("md-typo", "r.md", md("netwrok: {}\n"), "netwrok", "did you mean 'network'"),
    ("md-agents", "r.md", md("agents: {demo: {}}\n"), "agents", "holds one agent"),
    ("md-cred-proxy", "r.md", md("cred_proxy: {host: api.anthropic.com, header: x-api-key, secret: K}\n"),
     "cred_proxy", "secret: K"),
    ("md-bad-stem", "My Agent.md", md("runtime: runc\n"), "name", "lower-case letters"),
    ("md-yaml-line", "r.md", md("runtime: runc\nnetwork: {allow: [a\n"), "line 4", "fix the YAML"),
    ("md-nested-field", "r.md", md("network: {allow: ['*']}\n"), "network.allow[0]", "leading '*.'"),
]


@pytest.mark.parametrize("name, text, field, fix", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_manifest(folder, name, text, field, fix):
    path = write(folder, name, text)
    with pytest.raises(ManifestError) as caught:
        load(path)
    err = caught.value
    assert err.field == field, str(err)
    assert fix in err.message, str(err)
    assert str(err).startswith(f"{path}: {field}: ")


@pytest.mark.parametrize("host", [
    "pypi.org", "a_b.example.com", "xn--bcher-kva.example", "169.254.169.254", "-bad.example.com",
    "bad-.example.com", "a..b.example.com", "b\u00fccher.example", "UPPER.example.com", "a" * 64 + ".example.com",
    "*.example.com", "*.*.example.com", "exa mple.com",
])
def test_manifest_and_firewall_agree_on_host_names(tmp_path, host):
    """One grammar: a host the manifest accepts is one the firewall's policy accepts, and back."""
    from bottle_tasks.sidecars.firewall.hosts import HostError, parse_pattern

    path = write(tmp_path, "m.yaml", agent(f"network: {{allow: ['{host}']}}\n"))
    try:
        load(path)
        manifest_ok = True
    except ManifestError:
        manifest_ok = False
    try:
        firewall_ok = parse_pattern(host.lower()).text == host.lower().rstrip(".")
    except HostError:
        firewall_ok = False
    assert manifest_ok == firewall_ok, (host, manifest_ok, firewall_ok)
