"""The toolchains a coding agent uses, from inside a real bottle, through the firewall with
TLS interception (no host is passthrough): npm, pip in a venv, uv (installed with pip),
curl, git over HTTPS, Node's built-in fetch, Python's urllib and requests, and a JDK added
through `images.packages` (its truststore and proxy properties). One bottle for the module.

Traffic goes to the package registries reachable here (the npm registry, PyPI) and to a
test upstream this module starts (a git repository served over HTTPS). Maven Central is
not reachable here, so `mvn` / `gradle` resolving a dependency is not tried (see
docs/toolchains.md)."""
from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import HERE
from helpers import docker, inv, labelled, module_state_home, unique, write_manifest

from bottle_tasks import pki
from bottle_tasks.manifest import load
from bottle_tasks.plan import build_plan

pytestmark = pytest.mark.usefixtures("engine")

GIT_HOST = "git.upstream.test"
REGISTRIES = ("registry.npmjs.org", "pypi.org", "files.pythonhosted.org")
JDK = "openjdk-17-jdk-headless"


def git_site(workdir: Path) -> Path:
    """A bare repository with one commit, ready for git's dumb HTTP protocol."""
    src, www = workdir / "src", workdir / "www"
    www.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t.invalid", "HOME": str(workdir), "PATH": "/usr/bin:/bin"}
    for argv in (["git", "init", "-q", "-b", "main", str(src)],
                 ["sh", "-c", f"echo 'cloned through the bottle' > {src}/README"],
                 ["git", "-C", str(src), "add", "README"],
                 ["git", "-C", str(src), "commit", "-q", "-m", "first"],
                 ["git", "clone", "-q", "--bare", str(src), str(www / "repo.git")],
                 ["git", "-C", str(www / "repo.git"), "update-server-info"]):
        subprocess.run(argv, check=True, env=env, capture_output=True)
    subprocess.run(["chmod", "-R", "a+rX", str(workdir)], check=True)
    return www


def registry_cidrs() -> list[str]:
    """The registries' addresses the SSRF guard would refuse, as /32s for allowed_cidrs. Here
    the registries resolve to a documentation-range address (the intercepting proxy this
    machine reaches them through); where they resolve to public addresses, none."""
    found = set()
    for host in REGISTRIES:
        for *_, sockaddr in socket.getaddrinfo(host, 443, socket.AF_INET, socket.SOCK_STREAM):
            address = ipaddress.ip_address(sockaddr[0])
            if not address.is_global:
                found.add(f"{address}/32")
    return sorted(found)


def start_git_upstream(test_ca, workdir: Path, network: str, image: str) -> str:
    site = workdir / "git-upstream"
    site.mkdir()
    leaf = pki.mint_leaf(test_ca, [GIT_HOST])
    (site / "cert.pem").write_bytes(leaf.cert_pem)
    (site / "key.pem").write_bytes(leaf.key_pem)
    (site / "key.pem").chmod(0o644)  # the server reads it as another uid
    (site / "static.py").write_text((HERE / "upstream" / "static.py").read_text())
    git_site(site)
    return docker("run", "-d", "--init", "--label", "bottle.test=1", "--network", network,
                  "--network-alias", GIT_HOST, "-v", f"{site}:/upstream:ro", "--entrypoint", "python3",
                  image, "/upstream/static.py").stdout.strip()


class Bottle:
    def __init__(self, slug: str, manifest: Path):
        self.slug, self.manifest = slug, manifest

    def inv(self, *args: str, check: bool = True):
        return inv("use", self.slug, *args, manifest=self.manifest, check=check)

    def sh(self, command: str, timeout: int = 300) -> subprocess.CompletedProcess:
        """A login-less shell as the agent, with the container's environment (as `inv exec`)."""
        return subprocess.run(["docker", "exec", f"bottle-{self.slug}-agent", "bash", "-c", command],
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, command: str, timeout: int = 300) -> str:
        result = self.sh(command, timeout)
        assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    body = f"""    prompt: toolchain matrix
    resources: {{memory: 2g, cpus: 2, pids: 1024}}
    network:
      allow: [{', '.join((*REGISTRIES, GIT_HOST))}]
      passthrough: []
      allowed_cidrs: []
"""
    with module_state_home(tmp_path_factory, "toolchains") as (tmp, state_home):
        slug = unique("tc")
        manifest = write_manifest(tmp, {slug: body}, extra=f"images: {{packages: [{JDK}]}}\n",
                                  bundle=str(trust_bundle))
        launched = Bottle(slug, manifest)
        upstream = None
        try:
            launched.inv("net")
            state = json.loads((state_home / "bottle" / slug / "state.json").read_text())
            manifest.write_text(manifest.read_text().replace(
                "allowed_cidrs: []",
                f"allowed_cidrs: [{', '.join([state['cidr']['net-egress'], *registry_cidrs()])}]"))
            loaded = load(str(manifest))
            launched.plan = build_plan(slug, loaded, loaded.agents[slug])
            launched.inv("build")
            upstream = start_git_upstream(test_ca, tmp, f"bottle-{slug}-net-egress",
                                          launched.plan.images["firewall"].tag)
            launched.launch_output = launched.inv("launch")
            yield launched
        finally:
            launched.inv("down", "--purge", check=False)
            if upstream:
                docker("rm", "-f", upstream, check=False)
            for name in labelled(slug):
                docker("rm", "-f", name, check=False)
                docker("network", "rm", name, check=False)
            docker("volume", "rm", f"bottle-{slug}-home", check=False)


def intercepted(bottle, host: str) -> list[dict]:
    """The firewall's audit lines for requests it saw inside TLS to `host` (interception:
    it saw the method; a passthrough tunnel would show only the CONNECT)."""
    raw = bottle.inv("logs", "--json").stdout
    records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return [r for r in records if r.get("host") == host and r.get("decision") == "allow"
            and r.get("method") not in (None, "CONNECT")]


# -- the image -------------------------------------------------------------------
def test_image_has_the_everyday_tools(bottle):
    out = bottle.ok("python3 --version; pip3 --version; node --version; npm --version; git --version; "
                    "make --version | head -1; gcc --version | head -1; unzip -v | head -1; "
                    "command -v less ps jq curl; java -version 2>&1 | tail -1")
    assert "Python 3." in out and "GNU Make" in out and "gcc" in out and "/usr/bin/less" in out
    assert "OpenJDK" in out  # from images.packages
    assert bottle.plan.agent_image.name == "packages"
    assert docker("image", "inspect", bottle.plan.images["packages"].tag, check=False).returncode == 0


# -- the matrix ------------------------------------------------------------------
def test_curl(bottle):
    assert bottle.ok("curl -fsS -o /dev/null -w '%{http_code}' https://pypi.org/simple/six/") == "200"
    assert intercepted(bottle, "pypi.org")


def test_npm_install(bottle):
    out = bottle.ok("mkdir -p /tmp/npm-app && cd /tmp/npm-app && npm init -y >/dev/null && "
                    "npm install --no-audit --no-fund is-number@7.0.0 && "
                    "node -e 'console.log(require(\"is-number\")(5))'")
    assert out.strip().endswith("true")
    assert intercepted(bottle, "registry.npmjs.org")


def test_node_fetch(bottle):
    script = ("fetch('https://registry.npmjs.org/is-number').then(r => r.json())"
              ".then(j => console.log(j.name)).catch(e => { console.error(e.cause || e); process.exit(1); })")
    result = bottle.sh(f"node -e \"{script}\"")
    assert result.returncode == 0 and result.stdout.strip() == "is-number", result.stderr
    assert "Warning" not in result.stderr  # undici's "experimental" warning is dropped


def test_pip_install_into_a_venv(bottle):
    bottle.ok("python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --no-input --disable-pip-version-check "
              "requests==2.32.3")
    assert "2.32.3" in bottle.ok("/tmp/venv/bin/python -c 'import requests; print(requests.__version__)'")
    assert intercepted(bottle, "files.pythonhosted.org")


def test_uv_installed_with_pip(bottle):
    bottle.ok("python3 -m venv /tmp/uvenv && /tmp/uvenv/bin/pip install --no-input --disable-pip-version-check uv")
    bottle.ok("/tmp/uvenv/bin/uv pip install --python /tmp/uvenv/bin/python six==1.16.0")
    assert "1.16.0" in bottle.ok("/tmp/uvenv/bin/python -c 'import six; print(six.__version__)'")


def test_python_urllib(bottle):
    out = bottle.ok("python3 -c \"import urllib.request as u; print(u.urlopen('https://pypi.org/simple/six/').status)\"")
    assert out.strip() == "200"


def test_python_requests_in_a_venv(bottle):
    """requests from PyPI brings certifi's roots: REQUESTS_CA_BUNDLE points it at the bundle."""
    bottle.ok("test -x /tmp/venv/bin/python || (python3 -m venv /tmp/venv && "
              "/tmp/venv/bin/pip install --no-input --disable-pip-version-check requests==2.32.3)")
    out = bottle.ok("/tmp/venv/bin/python -c \"import requests; print(requests.get('https://pypi.org/simple/six/').status_code)\"")
    assert out.strip() == "200"


def test_git_clone_over_https(bottle):
    out = bottle.ok(f"rm -rf /tmp/clone && git clone -q https://{GIT_HOST}/repo.git /tmp/clone && cat /tmp/clone/README")
    assert "cloned through the bottle" in out
    assert intercepted(bottle, GIT_HOST)


JAVA_FETCH = """
public class Fetch {
    public static void main(String[] args) throws Exception {
        var connection = (java.net.HttpURLConnection) new java.net.URL(args[0]).openConnection();
        System.out.println(connection.getResponseCode());
    }
}
"""


def test_java_trusts_the_bottle_and_uses_its_proxy(bottle):
    """A JDK from images.packages: the bottle CA in its truststore (provision), the proxy
    from JAVA_TOOL_OPTIONS."""
    bottle.ok(f"cat > /tmp/Fetch.java <<'EOF'\n{JAVA_FETCH}\nEOF")
    out = bottle.ok("java /tmp/Fetch.java https://pypi.org/simple/six/ 2>/dev/null")
    assert out.strip() == "200"
    aliases = bottle.ok("keytool -list -keystore /etc/ssl/certs/java/cacerts -storepass changeit 2>/dev/null "
                        "| grep -c bottle-ca")
    assert int(aliases) >= 1

