"""Build the firewall image (and a test image FROM it) with plain `docker build`, and run
tests/firewall inside it: mitmproxy lives only in the sidecar image, not in the host venv.

Used by tests/test_firewall_addon.py; also a CLI:

    python tests/firewall/run_in_image.py [pytest args...]

Build context of the firewall image, exactly as the controller's `build` step makes it:
a temp dir with ``sidecar/`` (copy of bottle_tasks/sidecars/firewall/) and ``extra-ca.pem``.
The extra CA bundle comes from $BOTTLE_EXTRA_CA_BUNDLE, else the host's system bundle
(which holds the CA of any TLS-intercepting proxy the host trusts), else an empty file.
Everything created is labelled bottle.test=1 and removed again.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIDECAR = ROOT / "bottle_tasks" / "sidecars" / "firewall"
DOCKERFILE = ROOT / "dockerfiles" / "firewall.Dockerfile"
TEST_DOCKERFILE = Path(__file__).resolve().parent / "test.Dockerfile"
TESTS = Path(__file__).resolve().parent
LABEL = "bottle.test=1"
BASE_IMAGE = os.environ.get("BOTTLE_FIREWALL_BASE_IMAGE", "debian:trixie-slim")
BUILD_TIMEOUT = int(os.environ.get("BOTTLE_TEST_BUILD_TIMEOUT", "900"))
HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def docker(*args: str, timeout: float = 120, check: bool = False, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check, env=env, **kw
    )


def docker_problem(base_images: tuple[str, ...] = (BASE_IMAGE,)) -> str | None:
    """Why Docker tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        r = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if r.returncode != 0:
        return f"no Docker Engine answers: {r.stderr.strip()[:300]}"
    for image in base_images:
        if docker("image", "inspect", image).returncode != 0:
            return f"base image {image} is missing (run scripts/engine.sh / `make engine`)"
    return None


def extra_ca_bundle() -> bytes:
    env = os.environ.get("BOTTLE_EXTRA_CA_BUNDLE")
    if env:
        return Path(env).read_bytes()
    if HOST_BUNDLE.is_file():
        return HOST_BUNDLE.read_bytes()
    return b""


def _build(dockerfile: Path, context: Path, tag: str, *build_args: str) -> None:
    args = ["build", "--force-rm", "--label", LABEL, "-f", str(dockerfile), "-t", tag]
    for a in build_args:
        args += ["--build-arg", a]
    r = docker(*args, str(context), timeout=BUILD_TIMEOUT)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-40:])
        raise RuntimeError(f"docker build of {tag} failed:\n{tail}")


def build_firewall_image(tag: str) -> str:
    with tempfile.TemporaryDirectory(prefix="bottle-fw-ctx-") as tmp:
        ctx = Path(tmp)
        shutil.copytree(SIDECAR, ctx / "sidecar", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (ctx / "extra-ca.pem").write_bytes(extra_ca_bundle())
        _build(DOCKERFILE, ctx, tag, f"BASE_IMAGE={BASE_IMAGE}")
    return tag


def build_test_image(firewall_tag: str, tag: str) -> str:
    with tempfile.TemporaryDirectory(prefix="bottle-fwtest-ctx-") as tmp:
        ctx = Path(tmp)
        shutil.copytree(
            TESTS,
            ctx / "tests",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "run_in_image.py", "test.Dockerfile"),
        )
        (ctx / "extra-ca.pem").write_bytes(extra_ca_bundle())
        _build(TEST_DOCKERFILE, ctx, tag, f"FIREWALL_IMAGE={firewall_tag}")
    return tag


def remove_images(*tags: str) -> None:
    for tag in tags:
        if tag:
            docker("rmi", "-f", tag, timeout=120)


_images: dict[str, str] = {}


def _cleanup() -> None:
    remove_images(*reversed(list(_images.values())))
    _images.clear()


def firewall_image() -> str:
    """Build the firewall image once per process; removed at exit."""
    if "firewall" not in _images:
        if not _images:
            atexit.register(_cleanup)
        tag = f"bottle-test/firewall:{uuid.uuid4().hex[:10]}"
        build_firewall_image(tag)
        _images["firewall"] = tag
    return _images["firewall"]


def unit_test_image() -> str:
    if "test" not in _images:
        fw = firewall_image()
        tag = f"bottle-test/firewall-tests:{uuid.uuid4().hex[:10]}"
        build_test_image(fw, tag)
        _images["test"] = tag
    return _images["test"]


def run_unit_tests(pytest_args: list[str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run tests/firewall inside the test image, locked down like the sidecar runs."""
    image = unit_test_image()
    name = f"bottle-test-fwunit-{uuid.uuid4().hex[:8]}"
    cmd = [
        "run", "--rm", "--name", name, "--label", LABEL,
        "--network", "none", "--read-only", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", "65534:65534",
        image,
        "/opt/bottle/venv/bin/python", "-m", "pytest", "-p", "no:cacheprovider",
        "-q", "-rfE", "/opt/bottle/tests/firewall", *(pytest_args or []),
    ]  # fmt: skip
    try:
        return docker(*cmd, timeout=timeout)
    finally:
        docker("rm", "-f", name, timeout=60)


def main(argv: list[str]) -> int:
    problem = docker_problem()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    try:
        r = run_unit_tests(argv)
    finally:
        _cleanup()
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
