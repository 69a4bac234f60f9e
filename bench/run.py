"""`make bench`: measure bottle side by side with the plain alternative, in one run,
and report ratios. Not a test: nothing here asserts a speed.

1. Proxy overhead, on a bottle with a route (so with an egress proxy): HTTPS keep-alive
   requests/s and p50/p99 latency of the same client straight to the upstream; through a
   bare `mitmdump` hop (the firewall's image and CA, no addon: the floor any mitmproxy-based
   proxy starts from); through the firewall alone; through a second firewall whose audit lines
   go to /dev/null rather than Docker's log (what that log costs); the agent's real path, egress proxy
   (injecting a header) + firewall; and egress proxy + firewall for a host without routes,
   which the egress proxy relays unopened. Ratios to the bare hop, and each sidecar's memory.
   The same keep-alive requests again, each with the 18 headers an API client such as Claude
   Code sends (the firewall scans every header for secrets; the bare hop scans nothing).
2. Launch and teardown: warm `inv launch` (images built) to ready, and `inv down`,
   versus `docker-compose up` / `docker-compose down` of the same containers, networks
   and images (compose file generated here): for a bottle without routes, and for one
   with a route (so with the egress proxy). Beside them, each with the CLI only
   (BOTTLE_ENGINE_API=off), and the floors the engine sets: copies of the bottle's proxies
   started until ready, and the bottle's containers and networks removed, by this process
   over the engine's socket (no `inv`, no Python start-up).
3. A 360 MB workspace (a git repository: 240 MB of assets in git, 30,000 small files
   under a git-ignored node_modules): the first launch (selection, content scan, copy,
   image) and a relaunch after `down` with the workspace unchanged (the kept image),
   against the same launch without a workspace. `BENCH_ONLY=workspace` runs only this.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import compare  # noqa: E402  (bench/compare.py, beside this file)

from bottle_tasks import engine_api, pki  # noqa: E402
from bottle_tasks.containers import announced_ready  # noqa: E402
from bottle_tasks.docker import LABEL_SLUG  # noqa: E402

INV = str(Path(sys.executable).with_name("inv"))
HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
DOWNLOAD_BYTES = 256 * 1000 * 1000
RESULTS = REPO / "bench" / "results.json"
UPSTREAM = "api.upstream.test"  # routed in the routed bottle
RELAYED = "plain.upstream.test"  # allowed there, no route: relayed by the egress proxy unopened


def sh(*argv: str, env=None, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, env=env, cwd=REPO)


def inv(work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_STATE_HOME=str(work / "state"), INVOKE_BOTTLE_MANIFEST=str(work / "bottles.yaml"),
               BENCH_KEY="bench-key-value", **(env or {}))
    proc = sh(INV, *args, env=env, check=False)
    if proc.returncode:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def write_manifest(work: Path, slug: str, routed: str, bundle: Path, cidr: str = "") -> None:
    """`slug`: a plain bottle (launch vs compose); `routed`: one with a route (the proxies)."""
    (work / "bottles.yaml").write_text(f"""version: 1
trust: {{extra_ca_bundle: {bundle}}}
agents:
  {slug}:
    prompt: bench
    network: {{allow: [{UPSTREAM}], allowed_cidrs: [{cidr}]}}
  {routed}:
    prompt: bench
    secrets: [BENCH_KEY]
    network: {{allow: [{UPSTREAM}, {RELAYED}], allowed_cidrs: [{cidr}], dlp: {{max_body_bytes: 33554432}}}}
    egress_proxy:
      routes: [{{host: {UPSTREAM}, inject: [{{header: x-bench-key, secret: BENCH_KEY}}]}}]
""")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def proxy_overhead(work: Path, slug: str, ca: pki.KeyPair) -> dict:
    state = json.loads((work / "state" / "bottle" / slug / "state.json").read_text())
    firewall_ca, egress_ca = state["ca"]["firewall"], state["ca"]["egress"]
    image = json.loads(sh("docker", "inspect", f"bottle-{slug}-firewall").stdout)[0]["Config"]["Image"]
    files = work / "files"
    files.mkdir()
    leaf = pki.mint_leaf(ca, [UPSTREAM, RELAYED])
    (files / "cert.pem").write_bytes(leaf.cert_pem)
    (files / "key.pem").write_bytes(leaf.key_pem)
    (files / "key.pem").chmod(0o644)
    (files / "upstream-ca.pem").write_bytes(ca.cert_pem)
    (files / "firewall-ca.pem").write_text(firewall_ca)
    (files / "egress-ca.pem").write_text(egress_ca)
    shutil.copy(REPO / "tests" / "engine" / "upstream" / "server.py", files / "server.py")
    shutil.copy(REPO / "bench" / "client.py", files / "client.py")
    upstream = sh("docker", "run", "-d", "--init", "--label", "bottle.bench=1", "--network", f"bottle-{slug}-net-egress",
                  "--network-alias", UPSTREAM, "--network-alias", RELAYED, "-v", f"{files}:/upstream:ro",
                  "--entrypoint", "python3", image,
                  "/upstream/server.py").stdout.strip()
    bare = start_bare_hop(work, slug, image, files)
    quiet = start_quiet_firewall(work, slug, image)
    try:
        time.sleep(1.5)
        # The firewall of a routed bottle sits on the link network (the agent's goes through egress).
        runs = {"direct": (f"bottle-{slug}-net-egress", "-", "/upstream/upstream-ca.pem", UPSTREAM),
                "bare mitmdump": (f"bottle-{slug}-net-link", "barehop:3128", "/upstream/firewall-ca.pem", UPSTREAM),
                "firewall": (f"bottle-{slug}-net-link", "firewall:3128", "/upstream/firewall-ca.pem", UPSTREAM),
                "firewall, audit to /dev/null": (f"bottle-{slug}-net-link", "quietfw:3128", "/upstream/firewall-ca.pem",
                                                 UPSTREAM),
                "egress+firewall": (f"bottle-{slug}-net-internal", "egress:8080", "/upstream/egress-ca.pem", UPSTREAM),
                "egress relay+firewall": (f"bottle-{slug}-net-internal", "egress:8080", "/upstream/firewall-ca.pem",
                                          RELAYED)}
        def client(name: str, count: int, *mode: str) -> dict:
            network, proxy, cafile, host = runs[name]
            out = sh("docker", "run", "--rm", "--network", network, "-v", f"{files}:/upstream:ro",
                     "--entrypoint", "python3", image, "/upstream/client.py", host, "443",
                     str(count), proxy, cafile, *mode).stdout
            return json.loads(out.strip().splitlines()[-1])

        def interleaved(rounds: int, count: int, *mode: str) -> dict[str, list[dict]]:
            """Each variant once per round, so a slow moment of the machine hits every variant alike."""
            samples: dict[str, list[dict]] = {name: [] for name in runs}
            for _ in range(rounds):
                for name in runs:
                    samples[name].append(client(name, count, *mode))
            return samples

        results = {name: {**{key: statistics.median(s[key] for s in runs_) for key in runs_[0]},
                          "rps_rounds": [s["rps"] for s in runs_]}
                   for name, runs_ in interleaved(5, REQUESTS).items()}
        # the same requests, each with the headers an API client sends (the firewall scans them all);
        # then 16 connections at once
        for key, rounds, count, mode in (("api_headers", 5, REQUESTS, ("api-headers",)),
                                         ("parallel", 3, 16 * 100, ("parallel", "16"))):
            rps = {name: [s["rps"] for s in got] for name, got in interleaved(rounds, count, *mode).items()}
            results[key] = {name: statistics.median(values) for name, values in rps.items()}
            results[f"{key}_rounds"] = rps
        firewall = f"bottle-{slug}-firewall"
        results["download"] = {}
        for name in runs:
            before = process_stats(firewall)
            mb_s = client(name, DOWNLOAD_BYTES, "download")["mb_per_s"]
            results["download"][name] = {"mb_per_s": mb_s, "firewall_peak_rss_mib": process_stats(firewall)["hwm_mib"],
                                         "firewall_rss_before_mib": before["hwm_mib"]}
        results["dlp_body"] = {}
        for kind in ("text", "nearmiss"):
            for name in ("bare mitmdump", "firewall"):
                before = process_stats(firewall)
                seconds = client(name, 3, "upload", kind, "16")["seconds_per_request"]
                cpu = (process_stats(firewall)["cpu_s"] - before["cpu_s"]) / 3
                results["dlp_body"][f"{name}, {kind}"] = {"seconds_per_request": seconds,
                                                         "firewall_cpu_s_per_request": cpu}
        results["memory"] = {"bare mitmdump": memory(bare), "firewall": memory(firewall),
                             "egress": memory(f"bottle-{slug}-egress")}
        results["versions"] = {
            "engine": sh("docker", "version", "--format", "{{.Server.Version}}").stdout.strip(),
            "mitmproxy": sh("docker", "exec", firewall, "/opt/bottle/venv/bin/python", "-c",
                            "import mitmproxy.version as v; print(v.VERSION)").stdout.strip(),
            "cores": os.cpu_count(), "cpu": cpu_model()}
        return results
    finally:
        sh("docker", "rm", "-f", upstream, bare, quiet, check=False)


def start_bare_hop(work: Path, slug: str, image: str, files: Path) -> str:
    """mitmdump with its default addons and none of ours, on the same networks with the same CA."""
    conf = work / "bare-conf"
    conf.mkdir()
    shutil.copy(work / "state" / "bottle" / slug / "stage" / "firewall" / "mitmproxy-ca.pem", conf)
    conf.chmod(0o777)  # mitmdump writes its dhparam file next to the CA, as another uid
    (conf / "mitmproxy-ca.pem").chmod(0o644)
    bare = sh("docker", "run", "-d", "--init", "--label", "bottle.bench=1", "--network", f"bottle-{slug}-net-link",
              "--network-alias", "barehop", "-v", f"{conf}:/conf", "-v", f"{files}:/upstream:ro",
              "--entrypoint", "/opt/bottle/venv/bin/mitmdump", image, "-q", "--listen-port", "3128",
              "--set", "confdir=/conf", "--set", "ssl_verify_upstream_trusted_ca=/upstream/upstream-ca.pem",
              ).stdout.strip()
    sh("docker", "network", "connect", f"bottle-{slug}-net-egress", bare)
    return bare


def start_quiet_firewall(work: Path, slug: str, image: str) -> str:
    """A second firewall, the bottle's own image, config and user, whose audit lines go to
    /dev/null instead of Docker's log: what the audit log costs the engine, measured."""
    user = json.loads(sh("docker", "inspect", f"bottle-{slug}-firewall").stdout)[0]["Config"]["User"]
    stage = work / "state" / "bottle" / slug / "stage" / "firewall"
    quiet = sh("docker", "run", "-d", "--init", "--label", "bottle.bench=1", "--network", f"bottle-{slug}-net-egress",
               "--user", user, "--read-only", "--tmpfs", "/tmp", "-v", f"{stage}:/etc/bottle:ro",
               "--entrypoint", "/bin/sh", image, "-c", "exec /opt/bottle/firewall/entrypoint.sh >/dev/null",
               ).stdout.strip()
    sh("docker", "network", "connect", "--alias", "quietfw", f"bottle-{slug}-net-link", quiet)
    return quiet


def process_stats(container: str) -> dict:
    """CPU seconds and peak resident memory of the container's Python process (the proxy)."""
    script = ("for d in /proc/[0-9]*; do if grep -q python $d/comm 2>/dev/null; then "
              "cat $d/stat; grep VmHWM $d/status; fi; done")
    out = sh("docker", "exec", container, "sh", "-c", script).stdout.split("\n")
    fields = out[0].rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"cpu_s": (int(fields[11]) + int(fields[12])) / ticks, "hwm_mib": int(out[1].split()[1]) / 1024}


def cpu_model() -> str:
    """The processor's name and clock as the kernel reports them: runs on other machines
    (another VM size or host) are not comparable figure for figure, only ratio for ratio."""
    info = {key.strip(): value.strip() for key, _, value in
            (line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines())}
    return f"{info.get('model name', '?')}, {info.get('cpu MHz', '?')} MHz"


def memory(container: str) -> str:
    return sh("docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container).stdout.split("/")[0].strip()


# How often compose checks the proxies' health: a usual setting, and its quickest useful one
# (compose starts the agent at the first check that passes, so a 1 s interval waits up to 1 s
# after the proxies are ready; checked every 0.1 s, each check an exec, it waits less).
HEALTH_INTERVALS = {"compose up --wait": "1s", "compose up, 0.1 s checks": "100ms"}


def compose_file(stage: Path, images: dict[str, str], routed: bool, interval: str) -> str:
    """The bottle's topology for `docker-compose` (format 2.4: Debian's 1.29 knows it, with init,
    pids_limit and depends_on conditions; its `up` has no --wait, the agent's conditions make it
    wait): the firewall, with a route also the egress proxy, and the agent, each hardened as
    bottle runs it; the agent starts once the proxies answer (compose's way of being ready),
    their health checked every `interval`."""
    hardened = {"init": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}

    def sidecar(role: str, port: int, networks: dict) -> dict:
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"
        return {**hardened, "image": images[role], "user": "0:0", "read_only": True, "tmpfs": ["/tmp"],
                "volumes": [f"{stage}/{role}:/etc/bottle:ro"], "networks": networks, "mem_limit": "512m",
                "pids_limit": 256, "healthcheck": {"test": ["CMD", "python3", "-c", probe],
                                                   "interval": interval, "start_period": "0s"}}

    inside = "link" if routed else "internal"
    services = {"firewall": sidecar("firewall", 3128, {"egress": {}, inside: {"aliases": ["firewall"]}})}
    if routed:
        services["egress"] = dict(sidecar("egress", 8080, {"link": {}, "internal": {"aliases": ["egress"]}}),
                                  command=["--firewall", "firewall:3128"])
    proxy = "http://egress:8080" if routed else "http://firewall:3128"
    services["agent"] = {**hardened, "image": images["agent"], "user": "1000:1000", "mem_limit": "4g",
                         "pids_limit": 512, "dns": ["192.0.2.53"], "networks": ["internal"],
                         "environment": {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy},
                         "depends_on": {name: {"condition": "service_healthy"} for name in services}}
    networks = {"internal": {"internal": True}, "egress": {}, **({"link": {"internal": True}} if routed else {})}
    return yaml.safe_dump({"version": "2.4", "networks": networks, "services": services}, sort_keys=False)


def launch_vs_compose(work: Path, slug: str, routed: bool = False) -> dict:
    """Median seconds of `inv launch` / `inv down` of the bottle `slug` and of `docker-compose
    up` / `down` of the same containers, networks and images, in alternation."""
    stage = work / "state" / "bottle" / slug / "stage"
    roles = ("firewall", "egress", "agent") if routed else ("firewall", "agent")
    images = {role: json.loads(sh("docker", "inspect", f"bottle-{slug}-{role}").stdout)[0]["Config"]["Image"]
              for role in roles}
    compose_dir = work / f"compose-{slug}"
    compose_dir.mkdir()
    for role in roles[:-1]:
        shutil.copytree(stage / role, compose_dir / role)  # a copy: `down` removes the stage
    composes = {}
    for key, interval in HEALTH_INTERVALS.items():
        path = compose_dir / f"compose-{interval}.yaml"
        path.write_text(compose_file(compose_dir, images, routed, interval))
        composes[key] = ["docker-compose", "-p", f"benchc{secrets.token_hex(3)}", "-f", str(path)]
    inv(work, "use", slug, "down")
    times: dict[str, list[float]] = {"launch": [], "down": [], **{key: [] for key in HEALTH_INTERVALS},
                                     "compose down": [], "launch, CLI only": [], "down, CLI only": [],
                                     "proxies boot alone": [], "down, engine alone": []}
    cli_only = {"BOTTLE_ENGINE_API": "off"}  # every docker call through the CLI: what engine_api saves
    try:
        for _ in range(ROUNDS):
            times["launch"].append(timed(lambda: inv(work, "use", slug, "launch")))
            times["down"].append(timed(lambda: inv(work, "use", slug, "down")))
            times["launch, CLI only"].append(timed(lambda: inv(work, "use", slug, "launch", env=cli_only)))
            times["down, CLI only"].append(timed(lambda: inv(work, "use", slug, "down", env=cli_only)))
            inv(work, "use", slug, "launch")
            times["proxies boot alone"].append(proxies_boot(slug, roles[:-1]))
            times["down, engine alone"].append(engine_removals(slug))
            inv(work, "use", slug, "down")  # finds nothing left; clears the bottle's state
            for key, compose in composes.items():
                times[key].append(timed(partial(sh, *compose_up(compose))))
                down = timed(partial(sh, *compose, "down", "--timeout", "10"))
                if key == "compose up --wait":
                    times["compose down"].append(down)
    finally:  # stopped half way: compose's containers and networks are not the bottles' to sweep
        for compose in composes.values():
            sh(*compose, "down", "--timeout", "0", check=False)
    return {**{key: statistics.median(values) for key, values in times.items()}, "rounds": times}


def local_engine() -> engine_api.Engine:
    return engine_api.Engine(engine_api.local_socket() or engine_api.DEFAULT_SOCKET)


def proxies_boot(slug: str, roles: tuple[str, ...]) -> float:
    """Seconds from starting copies of the running bottle's proxies (`roles`; each created
    beforehand with its image, user, command, mounts and first network) to their ready lines,
    side by side, over the engine's socket: container starts and mitmproxy's boot, the floor of
    any launch (the issue's "one container start plus mitmproxy's boot")."""
    engine, copies = local_engine(), []
    try:
        for role in roles:
            found = json.loads(sh("docker", "inspect", f"bottle-{slug}-{role}").stdout)[0]
            config, host = found["Config"], found["HostConfig"]
            status, created = engine.request("POST", "/containers/create", {
                "Image": config["Image"], "User": config["User"], "Entrypoint": config["Entrypoint"],
                "Cmd": config["Cmd"], "Labels": {"bottle.bench": "1"},
                "HostConfig": {key: host[key] for key in ("Init", "ReadonlyRootfs", "Tmpfs", "Binds", "NetworkMode")}})
            if status != 201 or created is None:
                raise SystemExit(f"could not copy bottle-{slug}-{role}: {created}")
            copies.append(created["Id"])
        target = SimpleNamespace(engine=lambda: engine)  # announced_ready follows the log over this engine

        def boot(copy: str) -> bool:
            return engine.start(copy).ok and announced_ready(copy, 30, target=target)

        started = time.perf_counter()
        with ThreadPoolExecutor(len(copies)) as pool:
            booted = list(pool.map(boot, copies))
        seconds = time.perf_counter() - started
    finally:
        if copies:
            engine.remove_containers(copies)
    if not all(booted):
        raise SystemExit(f"copies of {slug}'s proxies did not get ready")
    return seconds


def engine_removals(slug: str) -> float:
    """Seconds the engine takes to remove the running bottle's containers (side by side) and
    then its networks, asked over its socket by this process: `inv down`'s floor, without
    Python's start-up, the manifest, the state or the undo log."""
    engine = local_engine()
    by_label = ("--filter", f"label={LABEL_SLUG}={slug}")
    containers = sh("docker", "ps", "-a", *by_label, "--format", "{{.Names}}").stdout.split()
    networks = sh("docker", "network", "ls", *by_label, "--format", "{{.Name}}").stdout.split()
    started = time.perf_counter()
    removed = [engine.remove_containers(containers), engine.remove_networks(networks)]
    seconds = time.perf_counter() - started
    if not all(result.ok for result in removed):
        raise SystemExit(f"removing {slug}'s containers and networks failed: "
                         + " ".join(result.stderr for result in removed))
    return seconds


def spread(values: list[float], against: list[float]) -> str:
    """The lowest and highest of the rounds' ratios (each round's variants ran back to back)."""
    ratios = [value / base for value, base in zip(values, against, strict=True)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}x"


WORKSPACE_ASSETS = 60              # files of 4 MB: 240 MB
WORKSPACE_MODULES = 30_000         # small files under node_modules/, git-ignored
WORKSPACE_ROUNDS = int(os.environ.get("BENCH_WORKSPACE_ROUNDS", "3"))


def make_workspace(root: Path) -> None:
    """The issue's repository: assets in git, node_modules ignored, a .env and dist/ ignored."""
    for i in range(WORKSPACE_ASSETS):
        path = root / "assets" / f"texture-{i:03}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4_000_000))
    for i in range(WORKSPACE_MODULES):
        path = root / "node_modules" / f"pkg{i // 100:03}" / f"file{i % 100:02}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"module.exports = {i};\n" + "// padding\n" * 380)  # ~4 KB: 120 MB in all
    (root / "src").mkdir()
    (root / "src" / "index.js").write_text("console.log('hi')\n")
    (root / ".gitignore").write_text("node_modules/\n.env\ndist/\n")
    (root / ".env").write_text("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@bench.invalid",
           "-c", "core.compression=0", "-c", "core.looseCompression=0"]
    sh("git", "init", "-q", str(root))
    sh(*git, "add", "-A")
    sh(*git, "commit", "-qm", "bench workspace")


def workspace_launch(work: Path, slug: str, ws: str) -> dict:
    """Median seconds of: a launch without a workspace, the first launch of the 360 MB
    workspace (its image removed by `down --purge` before each), and its relaunch after `down`."""
    times = {"launch, no workspace": [], "workspace, first launch": [], "workspace, unchanged relaunch": []}
    for _ in range(WORKSPACE_ROUNDS):
        times["launch, no workspace"].append(timed(lambda: inv(work, "use", slug, "launch")))
        inv(work, "use", slug, "down")
        inv(work, "use", ws, "down", "--purge")
        times["workspace, first launch"].append(timed(lambda: inv(work, "use", ws, "launch")))
        inv(work, "use", ws, "down")
        times["workspace, unchanged relaunch"].append(timed(lambda: inv(work, "use", ws, "launch")))
        inv(work, "use", ws, "down")
    return {key: statistics.median(values) for key, values in times.items()}


def add_workspace_agent(work: Path, ws: str, project: Path) -> None:
    with open(work / "bottles.yaml", "a") as manifest:
        manifest.write(f"  {ws}:\n    prompt: bench\n    workspace: {{path: {project}}}\n")


def print_workspace(result: dict) -> None:
    print(f"\n360 MB workspace (240 MB of assets in git, {WORKSPACE_MODULES} files in a git-ignored "
          f"node_modules; median of {WORKSPACE_ROUNDS} rounds)")
    plain = result["launch, no workspace"]
    for key, value in result.items():
        print(f"  {key:<30} {value:6.2f} s   {value - plain:+.2f} s against no workspace")


LAUNCH_TITLES = ("firewall and agent", "with a route: firewall, egress proxy, agent")


def print_rows(rps: dict[str, float], rounds: dict[str, list[float]]) -> None:
    """Requests/s of each variant, as a ratio to the bare hop's (and the spread of the rounds)."""
    for name, value in rps.items():
        print(f"  {name:<28} {value:8.0f} req/s   {value / rps['bare mitmdump']:.2f}x the bare hop"
              f" (rounds {spread(rounds[name], rounds['bare mitmdump'])})")


def print_launch(title: str, figures: dict) -> None:
    print(f"\nlaunch and teardown, {title} (median of {ROUNDS} rounds, warm images)")
    rounds = figures["rounds"]
    for key in rounds:
        print(f"  {key:<26} {figures[key]:6.2f} s")
    print(f"  ratio launch / compose up: {figures['launch'] / figures['compose up --wait']:.2f}x "
          f"(rounds {spread(rounds['launch'], rounds['compose up --wait'])}), with 0.1 s checks "
          f"{figures['launch'] / figures['compose up, 0.1 s checks']:.2f}x "
          f"(rounds {spread(rounds['launch'], rounds['compose up, 0.1 s checks'])}); "
          f"down / compose down: {figures['down'] / figures['compose down']:.2f}x "
          f"(rounds {spread(rounds['down'], rounds['compose down'])})")
    print(f"  the proxies' start and boot alone / compose up: "
          f"{figures['proxies boot alone'] / figures['compose up --wait']:.2f}x; launch / them: "
          f"{figures['launch'] / figures['proxies boot alone']:.2f}x (rounds "
          f"{spread(rounds['launch'], rounds['proxies boot alone'])}): the floor of any launch")
    print(f"  the engine's removals alone / compose down: "
          f"{figures['down, engine alone'] / figures['compose down']:.2f}x "
          f"(rounds {spread(rounds['down, engine alone'], rounds['compose down'])}): the floor of any `down`")
    print(f"  ratio launch / launch with the CLI only: {figures['launch'] / figures['launch, CLI only']:.2f}x "
          f"(rounds {spread(rounds['launch'], rounds['launch, CLI only'])})")


def main_launch() -> None:
    """`BENCH_ONLY=launch`: the launch and teardown rows alone (a few minutes, for working on
    the launch); printed, not recorded: bench/results.json keeps whole runs."""
    work = Path(tempfile.mkdtemp(prefix="bottle-bench-"))
    slug = f"bench{secrets.token_hex(2)}"
    routed = f"{slug}r"
    write_manifest(work, slug, routed, Path(HOST_BUNDLE))
    try:
        inv(work, "use", routed, "launch")
        routed_figures = launch_vs_compose(work, routed, routed=True)
        inv(work, "use", slug, "launch")
        plain_figures = launch_vs_compose(work, slug)
    finally:
        cleanup(work, routed, slug)
    print_launch(LAUNCH_TITLES[0], plain_figures)
    print_launch(LAUNCH_TITLES[1], routed_figures)


def main_workspace() -> None:
    """`BENCH_ONLY=workspace`: the workspace rows alone; merged into bench/results.json."""
    work = Path(tempfile.mkdtemp(prefix="bottle-bench-"))
    slug = f"bench{secrets.token_hex(2)}"
    ws = f"{slug}w"
    write_manifest(work, slug, f"{slug}r", Path(HOST_BUNDLE))
    project = work / "project"
    project.mkdir()
    try:
        make_workspace(project)
        add_workspace_agent(work, ws, project)
        inv(work, "use", slug, "launch")  # images built: the runs below are warm
        inv(work, "use", slug, "down")
        result = workspace_launch(work, slug, ws)
    finally:
        cleanup(work, slug, ws)
    print_workspace(result)
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record["workspace"] = dict(result, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))  # its own run
    RESULTS.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def cleanup(work: Path, *bottles: str) -> None:
    for bottle in bottles:
        subprocess.run([INV, "use", bottle, "down", "--purge"], cwd=REPO, capture_output=True,
                       env=dict(os.environ, XDG_STATE_HOME=str(work / "state"),
                                INVOKE_BOTTLE_MANIFEST=str(work / "bottles.yaml")))
    shutil.rmtree(work, ignore_errors=True)


def compose_up(compose: list[str]) -> list[str]:
    # The v2 plugin waits for health with --wait; Debian's 1.29 waits through the
    # agent's depends_on condition on the firewall's health.
    if sh("docker", "compose", "version", check=False).returncode == 0:
        return ["docker", "compose", *compose[1:], "up", "-d", "--wait"]
    return [*compose, "up", "-d"]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bottle-bench-"))
    slug = f"bench{secrets.token_hex(2)}"
    routed = f"{slug}r"
    ca = pki.kept_ca(REPO / ".venv" / "bottle-bench", "bottle bench upstream CA")  # the next run reuses the images
    bundle = work / "bundle.pem"
    bundle.write_bytes(Path(HOST_BUNDLE).read_bytes() + b"\n" + ca.cert_pem)
    write_manifest(work, slug, routed, bundle)
    ws = f"{slug}w"
    try:
        inv(work, "use", routed, "net")
        cidr = json.loads((work / "state" / "bottle" / routed / "state.json").read_text())["cidr"]["net-egress"]
        write_manifest(work, slug, routed, bundle, cidr)
        (work / "project").mkdir()
        make_workspace(work / "project")
        add_workspace_agent(work, ws, work / "project")
        inv(work, "use", routed, "launch")  # builds images if needed: the runs below are warm
        overhead = proxy_overhead(work, routed, ca)
        launch_routed = launch_vs_compose(work, routed, routed=True)
        inv(work, "use", slug, "launch")
        launch = launch_vs_compose(work, slug)
        workspace = workspace_launch(work, slug, ws)
    finally:
        cleanup(work, routed, slug, ws)
    d, b = overhead["direct"], overhead["bare mitmdump"]
    print(f"\nproxy overhead ({REQUESTS} HTTPS keep-alive requests, median of 5 interleaved runs)")
    for name in ("direct", "bare mitmdump", "firewall", "firewall, audit to /dev/null", "egress+firewall",
                 "egress relay+firewall"):
        r = overhead[name]
        print(f"  {name:<28} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms"
              f"   throughput {r['rps'] / b['rps']:.2f}x the bare hop (rounds {spread(r['rps_rounds'], b['rps_rounds'])}),"
              f" {r['rps'] / d['rps']:.2f}x direct")
    print("  memory after the runs: " + ", ".join(f"{k} {v}" for k, v in overhead["memory"].items()))
    print("\nthe same, each request with an API client's 18 headers (median of 5 interleaved runs)")
    print_rows(overhead["api_headers"], overhead["api_headers_rounds"])
    print("\n16 connections at once (aggregate requests/s, median of 3 interleaved runs)")
    print_rows(overhead["parallel"], overhead["parallel_rounds"])
    print(f"\none {DOWNLOAD_BYTES // 1000000} MB download")
    for name, row in overhead["download"].items():
        print(f"  {name:<28} {row['mb_per_s']:8.1f} MB/s   "
              f"{row['mb_per_s'] / overhead['download']['bare mitmdump']['mb_per_s']:.2f}x the bare hop   "
              f"firewall peak RSS {row['firewall_rss_before_mib']:.0f} -> {row['firewall_peak_rss_mib']:.0f} MiB")
    print("\n16 MiB JSON request body (DLP scans it in the firewall; the bare hop only relays)")
    for name, row in overhead["dlp_body"].items():
        print(f"  {name:<24} {row['seconds_per_request']:6.2f} s per request, "
              f"firewall CPU {row['firewall_cpu_s_per_request']:.2f} s per request")
    print_launch(LAUNCH_TITLES[0], launch)
    print_launch(LAUNCH_TITLES[1], launch_routed)
    print_workspace(workspace)
    record = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "requests": REQUESTS,
              "proxies": overhead, "launch": launch, "launch_routed": launch_routed, "workspace": workspace}
    previous = previous_record()
    RESULTS.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"\nfigures written to {RESULTS.relative_to(REPO)}; the aims, beside the run it replaces "
          f"(`make bench-compare` sets it beside any committed run):")
    print(compare.side_by_side(previous, record, f"the previous {RESULTS.relative_to(REPO)}", "this run"))


def previous_record() -> dict | None:
    """The run this one replaces in bench/results.json, if there is a readable one."""
    try:
        return json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return None


def _stop_as_interrupted(signum: int, _frame) -> None:
    raise KeyboardInterrupt  # so the `finally:` blocks remove the bench's bottles, as on Ctrl-C


if __name__ == "__main__":
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _stop_as_interrupted)
    {"workspace": main_workspace, "launch": main_launch}.get(os.environ.get("BENCH_ONLY", ""), main)()
