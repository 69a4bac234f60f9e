"""Image specs: which Dockerfiles exist, their base, their build context, and a tag
hashed from every input, so an unchanged `build` is only a few `docker image inspect`s."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Shipped inside the package (bottle_tasks/dockerfiles, a link to the repo's dockerfiles/
# in a checkout, real files in an install): the `bottle` command builds without a checkout.
DOCKERFILES = Path(__file__).resolve().parent / "dockerfiles"
SIDECARS = Path(__file__).resolve().parent / "sidecars"

# mitmproxy >= 12 needs Python >= 3.12, which bookworm lacks: the proxy images use
# the manifest's `images.proxy_base` (trixie by default), the rest `images.base`.
PROXY_IMAGES = frozenset({"firewall", "egress", "gitgate"})
# Images built from several sidecar packages, copied into the context as packages/<name>/:
# the egress proxy reuses the firewall's host grammar, tunnel rules and health check;
# supervise the firewall's host grammar.
SIDECAR_PACKAGES = {"egress": ("egress", "firewall"), "supervise": ("supervise", "firewall"),
                    "gitgate": ("gitgate", "firewall")}  # the gate: the firewall's DLP rules and policy
# Sidecar images a bottle needs only when its agent declares the sidecar: image -> agent field.
OPTIONAL_IMAGES = {"egress": "routes", "supervise": "supervise", "gitgate": "gated_remotes"}
# Derived image that carries a copy of the workspace (never a bind mount of host files);
# its context is packed by workspace/pack.py from what workspace/selection.py chose.
WORKSPACE_DOCKERFILE = """FROM {base}
COPY --chown=agent:agent workspace/ /workspace/
"""
# Left out of the controller's own sidecar trees (the workspace has its own rules).
SKIP_NAMES = {"__pycache__", ".pytest_cache"}
# Derived image that adds the manifest's `images.packages` to the agent image. The names
# are validated Debian package names (manifest.py), so they can stand in the RUN line.
# The extra CA reaches apt only through Acquire::https::CAInfo, and leaves with /tmp. The
# agent image excludes man pages from dpkg, but some maintainer scripts (the JDK's
# update-alternatives) link into /usr/share/man/man1 and fail when it does not exist.
PACKAGES_DOCKERFILE = """FROM {base}
USER root
COPY extra-ca.pem /tmp/extra-ca.pem
RUN set -eux; \\
    mkdir -p /usr/share/man/man1; \\
    cat /etc/ssl/certs/ca-certificates.crt /tmp/extra-ca.pem > /tmp/build-ca.pem; \\
    apt-get -o Acquire::https::CAInfo=/tmp/build-ca.pem update; \\
    DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::https::CAInfo=/tmp/build-ca.pem \\
        install -y --no-install-recommends {packages}; \\
    apt-get clean; \\
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /tmp/* /tmp/.[!.]*
USER agent
"""
# Images built FROM another of the bottle's images, in this order, after the others.
DERIVED = ("packages", "workspace")


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    dockerfile_text: str
    build_args: dict[str, str] = field(default_factory=dict)
    sidecar_dir: Path | None = None    # copied into the context as sidecar/
    workspace_dir: Path | None = None  # the workspace (packed by workspace/image.py, not here)
    extra_ca: Path | None = None       # copied into the context as extra-ca.pem (empty if None)
    packages: tuple[Path, ...] = ()    # copied into the context as packages/<name>/

    def make_context(self) -> Path:
        """Assemble the build context in a fresh temp dir; the caller removes it."""
        root = Path(tempfile.mkdtemp(prefix=f"bottle-build-{self.name}-"))
        (root / "Dockerfile").write_text(self.dockerfile_text)
        extra = self.extra_ca.read_bytes() if self.extra_ca else b""
        (root / "extra-ca.pem").write_bytes(extra)
        if self.sidecar_dir:
            shutil.copytree(self.sidecar_dir, root / "sidecar", ignore=_ignore)
        for package in self.packages:
            shutil.copytree(package, root / "packages" / package.name, ignore=_ignore)
        return root


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {name for name in names if name in SKIP_NAMES or name.endswith(".pyc")}


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES)
        for name in sorted(filenames):
            if not name.endswith(".pyc"):
                yield Path(dirpath) / name


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:12]


def _tree_digest(root: Path, by_content: bool = True) -> bytes:
    h = hashlib.sha256()
    for path in _walk(root):
        h.update(str(path.relative_to(root)).encode())
        if by_content:
            h.update(path.read_bytes())
        else:  # large workspaces: size and mtime stand in for content
            st = path.lstat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.digest()


def needed(name: str, agent) -> bool:
    field = OPTIONAL_IMAGES.get(name)
    return field is None or bool(getattr(agent, field, None))


def available() -> list[str]:
    return sorted(p.name.removesuffix(".Dockerfile") for p in DOCKERFILES.glob("*.Dockerfile"))


def spec_for(name: str, base: str, proxy_base: str, extra_ca: str | None) -> ImageSpec:
    dockerfile = (DOCKERFILES / f"{name}.Dockerfile").read_text()
    args = {"BASE_IMAGE": proxy_base if name in PROXY_IMAGES else base}
    packages = tuple(SIDECARS / package for package in SIDECAR_PACKAGES.get(name, ()))
    own_dir = SIDECARS / name
    sidecar = own_dir if own_dir.is_dir() and not packages else None
    ca_path = Path(extra_ca) if extra_ca else None
    digest = _digest(dockerfile.encode(), repr(sorted(args.items())).encode(),
                     _tree_digest(sidecar) if sidecar else b"",
                     *(package.name.encode() + _tree_digest(package) for package in packages),
                     ca_path.read_bytes() if ca_path else b"")
    return ImageSpec(name, f"bottle/{name}:{digest}", dockerfile, args, sidecar, None, ca_path, packages)


def packages_spec(agent_tag: str, packages: tuple[str, ...], extra_ca: str | None) -> ImageSpec:
    """The agent image plus Debian packages: shared by every bottle that asks for the same
    list (no bottle's data in it), tagged by the list, the agent image and the CA."""
    names = sorted(packages)
    text = PACKAGES_DOCKERFILE.format(base=agent_tag, packages=" ".join(names))
    ca_path = Path(extra_ca) if extra_ca else None
    digest = _digest(text.encode(), ca_path.read_bytes() if ca_path else b"")
    return ImageSpec("packages", f"bottle/agent-packages:{digest}", text, {}, None, None, ca_path)


def workspace_spec(agent_tag: str, slug: str, agent) -> ImageSpec:
    """Tagged by the digest of what enters (names, modes, sizes, mtimes, the rules): an
    unchanged workspace finds its image, which `down` keeps, and is not copied again."""
    from .workspace.image import selection_for  # the packing code only for a workspace copy

    text = WORKSPACE_DOCKERFILE.format(base=agent_tag)
    workspace = Path(agent.workspace.path)
    digest = _digest(text.encode(), selection_for(agent).digest.encode())
    return ImageSpec("workspace", f"bottle/workspace-{slug}:{digest}", text, {}, None, workspace, None)
