"""Engine fixtures: a test CA the firewall trusts (through trust.extra_ca_bundle, the
same feature corporate users need), and upstream containers that stand in for real
API hosts on a bottle's egress network."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import HOST_BUNDLE, REPO, SLUGS, docker, remove_home_volumes

from bottle_tasks import pki

HERE = Path(__file__).resolve().parent
# Kept between runs: the bundle is an input of every image's tag, so a stable test
# CA lets a second test run reuse the images the first one built.
CACHE = REPO / ".venv" / "bottle-test"


@pytest.fixture(scope="session", autouse=True)
def home_volumes_of_this_session():
    """`down` keeps a bottle's home volume (Claude's state) on purpose; the tests' bottles
    are gone after the session, so their volumes go too: only those of the names this
    session made (helpers.unique), never anyone else's."""
    yield
    remove_home_volumes(set(SLUGS))


@pytest.fixture(scope="session")
def test_ca() -> pki.KeyPair:
    return pki.kept_ca(CACHE, "bottle tests upstream CA")


@pytest.fixture(scope="session")
def trust_bundle(test_ca) -> Path:
    """The host bundle (registries through the intercepting proxy) + the test CA."""
    bundle = CACHE / "trust-bundle.pem"
    content = Path(HOST_BUNDLE).read_bytes() + b"\n" + test_ca.cert_pem
    if not bundle.exists() or bundle.read_bytes() != content:
        bundle.write_bytes(content)
    return bundle


def start_upstream(test_ca, workdir: Path, network: str, aliases: list[str], image: str) -> str:
    """An HTTPS echo server with a certificate for `aliases`, on `network`."""
    certs = workdir / f"upstream-{aliases[0]}"
    certs.mkdir(exist_ok=True)
    leaf = pki.mint_leaf(test_ca, aliases)
    (certs / "cert.pem").write_bytes(leaf.cert_pem)
    (certs / "key.pem").write_bytes(leaf.key_pem)
    (certs / "key.pem").chmod(0o644)  # the server reads it as another uid
    (certs / "server.py").write_text((HERE / "upstream" / "server.py").read_text())
    argv = ["run", "-d", "--init", "--label", "bottle.test=1", "--network", network,
            "-v", f"{certs}:/upstream:ro", "--entrypoint", "python3"]
    for alias in aliases:
        argv += ["--network-alias", alias]
    container = docker(*argv, image, "/upstream/server.py").stdout.strip()
    return container


def container_ip(container: str, network: str) -> str:
    data = json.loads(docker("inspect", container).stdout)[0]
    return data["NetworkSettings"]["Networks"][network]["IPAddress"]
