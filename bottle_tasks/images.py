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
DOCKERFILES = REPO_ROOT / "dockerfiles"
SIDECARS = Path(__file__).resolve().parent / "sidecars"

# mitmproxy >= 12 needs Python >= 3.12, which bookworm lacks: the proxy images use
# the manifest's `images.proxy_base` (trixie by default), the rest `images.base`.
PROXY_IMAGES = frozenset({"firewall", "egress"})
# Images built from several sidecar packages, copied into the context as packages/<name>/:
# the egress proxy reuses the firewall's host grammar, tunnel rules and health check.
SIDECAR_PACKAGES = {"egress": ("egress", "firewall")}
# Derived image that carries a copy of the workspace (never a bind mount of host files).
WORKSPACE_DOCKERFILE = """FROM {base}
COPY --chown=agent:agent workspace/ /workspace/
"""
SKIP_NAMES = {"__pycache__", ".pytest_cache", ".venv", "node_modules"}


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    dockerfile_text: str
    build_args: dict[str, str] = field(default_factory=dict)
    sidecar_dir: Path | None = None    # copied into the context as sidecar/
    workspace_dir: Path | None = None  # copied into the context as workspace/
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
        if self.workspace_dir:
            shutil.copytree(self.workspace_dir, root / "workspace", ignore=_ignore, symlinks=True)
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


def available() -> list[str]:
    return sorted(p.name.removesuffix(".Dockerfile") for p in DOCKERFILES.glob("*.Dockerfile"))


def spec_for(name: str, base: str, proxy_base: str, extra_ca: str | None) -> ImageSpec:
    dockerfile = (DOCKERFILES / f"{name}.Dockerfile").read_text()
    args = {"BASE_IMAGE": proxy_base if name in PROXY_IMAGES else base}
    packages = tuple(SIDECARS / package for package in SIDECAR_PACKAGES.get(name, ()))
    sidecar = SIDECARS / name
    sidecar = sidecar if sidecar.is_dir() and not packages else None
    ca_path = Path(extra_ca) if extra_ca else None
    digest = _digest(dockerfile.encode(), repr(sorted(args.items())).encode(),
                     _tree_digest(sidecar) if sidecar else b"",
                     *(package.name.encode() + _tree_digest(package) for package in packages),
                     ca_path.read_bytes() if ca_path else b"")
    return ImageSpec(name, f"bottle/{name}:{digest}", dockerfile, args, sidecar, None, ca_path, packages)


def workspace_spec(agent_tag: str, slug: str, workspace: Path) -> ImageSpec:
    text = WORKSPACE_DOCKERFILE.format(base=agent_tag)
    digest = _digest(text.encode(), str(workspace).encode(), _tree_digest(workspace, by_content=False))
    return ImageSpec("workspace", f"bottle/workspace-{slug}:{digest}", text, {}, None, workspace, None)
