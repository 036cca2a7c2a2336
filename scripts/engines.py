#!/usr/bin/env python3
"""Real Elasticsearch and OpenSearch servers for tests, CI and benchmarks, on loopback ports.

Downloads each engine's integ-test-zip from Maven Central with Maven, caches and unpacks it under
`.engines/`, starts it as an unprivileged user (both engines refuse root) with security off, a
512 MB heap and single-node discovery, waits until it answers `GET /`, and stops it by its PID.

    python scripts/engines.py start es8      # prints http://127.0.0.1:9281 once it answers
    python scripts/engines.py stop es8
    python scripts/engines.py start-all      # every engine that is served and has its Java
    python scripts/engines.py stop-all       # every node started from this .engines/ directory
    python scripts/engines.py status
    python scripts/engines.py fetch es8      # download and unpack only

Standard library only: the script runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _default_engines_dir() -> Path:
    """`.engines/` in the repository, unless the engine user could not walk down to it (a clone
    under /root, mode 700, when we are root): then a directory it can reach, the same each time."""
    here = ROOT / ".engines"
    if os.geteuid() == 0 and any(not p.stat().st_mode & 0o001 for p in [ROOT, *ROOT.parents]):
        return Path("/var/tmp") / f"match-engines-{hashlib.sha1(bytes(ROOT)).hexdigest()[:10]}"
    return here


ENGINES_DIR = Path(os.environ.get("MATCH_ENGINES_DIR") or _default_engines_dir()).resolve()
ENGINE_USER = os.environ.get("MATCH_ENGINE_USER", "match-engine")
HEAP = os.environ.get("MATCH_ENGINE_HEAP", "512m")
START_TIMEOUT = float(os.environ.get("MATCH_ENGINE_START_TIMEOUT", "240"))
STOP_TIMEOUT = 60.0
# Shifts every engine's ports, so a second checkout can run its engines beside the first's.
PORT_OFFSET = int(os.environ.get("MATCH_ENGINE_PORT_OFFSET", "0"))
JVM_DIR = Path("/usr/lib/jvm")
# dependency:copy needs 3.x (the 2.8 that Maven 3.8 defaults to has no -Dartifact for copy).
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"


class EngineError(Exception):
    """A clear, printable reason why an engine could not be fetched, started or stopped."""


@dataclass(frozen=True)
class Engine:
    name: str
    product: str  # "elasticsearch" or "opensearch"
    default_version: str | None  # None: no integ-test-zip of this major is on Maven Central
    base_port: int
    java_min: int
    java_max: int  # newest Java the engine runs on (2.x/8.x still rely on the SecurityManager)

    @property
    def version(self) -> str | None:
        return os.environ.get(f"MATCH_{self.name.upper()}_VERSION") or self.default_version

    @property
    def major(self) -> int:
        return int(self.name[2:])

    @property
    def http_port(self) -> int:
        return self.base_port + PORT_OFFSET

    @property
    def transport_port(self) -> int:
        return self.http_port + 100

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def artifact(self) -> str:
        group = f"org.{self.product}.distribution.integ-test-zip"
        return f"{group}:{self.product}:{self.version}:zip"


# Versions: the newest of each major that Maven Central served on 2026-11-25. Elasticsearch 9 has
# no integ-test-zip there (the group's metadata stops at 8.19.21), so es9 needs MATCH_ES9_VERSION.
ENGINES: dict[str, Engine] = {
    e.name: e
    for e in (
        Engine("es8", "elasticsearch", "8.19.21", 9281, 17, 21),
        Engine("es9", "elasticsearch", None, 9291, 21, 99),
        Engine("os2", "opensearch", "2.19.6", 9282, 17, 21),
        Engine("os3", "opensearch", "3.6.0", 9292, 21, 99),
    )
}
DEFAULT_ENGINES = ("es8", "os2")


def log(message: str) -> None:
    print(f"engines: {message}", file=sys.stderr, flush=True)


# --- prerequisites -------------------------------------------------------------------------------


def java_major(home: Path) -> int | None:
    """The feature version of the JDK at `home`, from its `release` file."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    found = re.search(r'^JAVA_VERSION="(?:1\.)?(\d+)', text, re.MULTILINE)
    return int(found.group(1)) if found and (home / "bin" / "java").exists() else None


def java_homes() -> list[Path]:
    homes = [Path(os.environ[v]) for v in ("MATCH_JAVA_HOME", "JAVA_HOME") if os.environ.get(v)]
    if JVM_DIR.is_dir():
        homes += sorted(p.resolve() for p in JVM_DIR.iterdir() if p.is_dir())
    java = shutil.which("java")
    if java:
        homes.append(Path(java).resolve().parent.parent)
    return list(dict.fromkeys(homes))


def find_java(engine: Engine) -> Path:
    """The oldest JDK in the engine's supported range: the one its release was tested on most."""
    found = [(m, h) for h in java_homes() if (m := java_major(h)) is not None]
    fitting = sorted((m, str(h)) for m, h in found if engine.java_min <= m <= engine.java_max)
    if not fitting:
        have = ", ".join(f"{h} (Java {m})" for m, h in found) or "none"
        wanted = f"Java {engine.java_min}" + (
            f"-{engine.java_max}" if engine.java_max < 99 else "+"
        )
        raise EngineError(
            f"{engine.name} needs {wanted}; JDKs found: {have}. Install one "
            "(e.g. apt-get install openjdk-17-jdk-headless) or set MATCH_JAVA_HOME."
        )
    return Path(fitting[0][1])


def missing_prerequisites(engine: Engine) -> str | None:
    """Why `engine` cannot be started here, or None if it can (cached download counts)."""
    if engine.version is None:
        return (
            f"{engine.name}: no {engine.product} {engine.major}.x integ-test-zip is published on "
            f"Maven Central; set MATCH_{engine.name.upper()}_VERSION to one that is"
        )
    try:
        find_java(engine)
    except EngineError as exc:
        return str(exc)
    if not zip_path(engine).exists() and not dist_dir(engine).is_dir() and not shutil.which("mvn"):
        return "mvn (Maven) not found on PATH: apt-get install maven"
    return None


# --- download and unpack -------------------------------------------------------------------------


def zip_path(engine: Engine) -> Path:
    return ENGINES_DIR / "downloads" / f"{engine.product}-{engine.version}.zip"


def dist_dir(engine: Engine) -> Path:
    return ENGINES_DIR / "dist" / f"{engine.product}-{engine.version}"


def download(engine: Engine) -> Path:
    """The cached zip, fetched with `mvn dependency:copy` when absent."""
    target = zip_path(engine)
    if target.exists():
        return target
    mvn = shutil.which("mvn")
    if not mvn:
        raise EngineError("mvn (Maven) not found on PATH: apt-get install maven")
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"downloading {engine.artifact} from Maven Central")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [
            mvn,
            "-B",
            "-q",
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={engine.artifact}",
            f"-DoutputDirectory={tmp}",
            "-Dmdep.stripVersion=false",
        ]
        # cwd=tmp: a pom.xml in the caller's directory must not turn this into a project build.
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        got = list(Path(tmp).glob("*.zip"))
        if done.returncode != 0 or len(got) != 1:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise EngineError(f"mvn could not fetch {engine.artifact}:\n{tail}")
        got[0].replace(target)
    return target


def unpack(engine: Engine) -> Path:
    """The unpacked distribution, extracted atomically (a half-extracted tree is never used)."""
    home = dist_dir(engine)
    if (home / "bin" / engine.product).exists():
        return home
    archive = download(engine)
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home.parent) as tmp, zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            zf.extract(info, tmp)
            mode = info.external_attr >> 16
            if mode & 0o777:  # zipfile drops Unix modes; bin/ needs its exec bits
                os.chmod(Path(tmp) / info.filename, mode & 0o777)
        (top,) = Path(tmp).iterdir()
        top.chmod(0o755)
        if home.exists():  # lost a race with another process: keep theirs
            return home
        top.replace(home)
    return home


# --- the unprivileged user -----------------------------------------------------------------------


def run_as() -> pwd.struct_passwd | None:
    """The account the engines run as: ENGINE_USER when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(ENGINE_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if not useradd:
        raise EngineError(f"running as root and no useradd to create user {ENGINE_USER}")
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ENGINE_USER],
        check=True,
        capture_output=True,
    )
    log(f"created system user {ENGINE_USER}")
    return pwd.getpwnam(ENGINE_USER)


def chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def check_reachable(path: Path, user: pwd.struct_passwd | None) -> None:
    """The engine user must be able to walk down to `path` (a clone under /root may not be)."""
    if user is None:
        return
    probe = subprocess.run(
        ["test", "-x", str(path)], user=user.pw_uid, group=user.pw_gid, check=False
    )
    if probe.returncode != 0:
        raise EngineError(
            f"user {user.pw_name} cannot reach {path}: a parent directory is not searchable "
            "by others. Set MATCH_ENGINES_DIR to a directory it can reach (e.g. /var/tmp/engines)."
        )


# --- nodes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One engine process: a name, its ports and its own config, data and logs."""

    engine: Engine
    name: str
    http_port: int
    transport_port: int
    extra: tuple[tuple[str, str], ...] = ()  # further -E settings (cluster membership, roles)

    @property
    def dir(self) -> Path:
        return ENGINES_DIR / "nodes" / self.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid_file(self) -> Path:
        return self.dir / "launcher.pid"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"


def default_node(engine: Engine) -> Node:
    return Node(engine, engine.name, engine.http_port, engine.transport_port)


def node_settings(node: Node) -> dict[str, str]:
    settings = {
        "cluster.name": f"match-{node.name}",
        "node.name": node.name,
        "network.host": "127.0.0.1",
        "http.port": str(node.http_port),
        "transport.port": str(node.transport_port),
        "path.data": str(node.dir / "data"),
        "path.logs": str(node.dir / "logs"),
        "discovery.type": "single-node",
        # A nearly full disk on a developer's machine must not turn the test index read-only.
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    if node.engine.product == "elasticsearch":
        # The ES 8+ zip ships x-pack-security, on by default with TLS and generated passwords.
        settings["xpack.security.enabled"] = "false"
    settings.update(dict(node.extra))
    if any(k.startswith("discovery.seed") for k, _ in node.extra):
        del settings["discovery.type"]
    return settings


def node_env(engine: Engine, node: Node, java: Path, user: pwd.struct_passwd | None) -> dict:
    prefix = "ES" if engine.product == "elasticsearch" else "OPENSEARCH"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ES_", "OPENSEARCH_"))}
    env.update(
        {
            "JAVA_HOME": str(java),
            f"{prefix}_JAVA_HOME": str(java),
            f"{prefix}_PATH_CONF": str(node.dir / "config"),
            f"{prefix}_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP}",
            f"{prefix}_TMPDIR": str(node.dir / "tmp"),
        }
    )
    env.pop("JAVA_TOOL_OPTIONS", None)
    if user is not None:
        env.update({"HOME": str(node.dir), "USER": user.pw_name, "LOGNAME": user.pw_name})
    return env


def read_pid(node: Node) -> int | None:
    try:
        pid = int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by the engine user
    return pid


def http_get(url: str, timeout: float = 2.0) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return exc.code, dict(exc.headers), body
    except (OSError, ValueError):
        return 0, {}, {}


def engine_info(url: str, timeout: float = 2.0) -> dict | None:
    """`{"distribution", "number"}` of the engine at `url`, or None when none is ready there.

    Ready means the cluster has a master (health answers). The version comes from `GET /`, except
    on the Elasticsearch 8+ integ-test-zip, which lacks the rest-root module that serves `GET /`
    (405): there it comes from the local node's info, and every Elasticsearch response carries
    `X-Elastic-Product: Elasticsearch`, which OpenSearch never sends.
    """
    status, _, _ = http_get(f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout)
    if status != 200:
        return None
    status, headers, body = http_get(f"{url}/", timeout)
    version = body.get("version") if status == 200 else None
    if isinstance(version, dict) and "number" in version:
        return {
            "distribution": version.get("distribution", "elasticsearch"),
            "number": version["number"],
        }
    status, headers, body = http_get(f"{url}/_nodes/_local?filter_path=nodes.*.version", timeout)
    nodes = list(body.get("nodes", {}).values()) if status == 200 else []
    if not nodes:
        return None
    product = {k.lower(): v for k, v in headers.items()}.get("x-elastic-product", "")
    distribution = "elasticsearch" if product.lower() == "elasticsearch" else "opensearch"
    return {"distribution": distribution, "number": nodes[0]["version"]}


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(node: Node, lines: int = 30) -> str:
    """The end of the console output (the JVM's and the engine's log lines, and fatal errors)."""
    paths = [node.console, node.dir / "logs" / f"{node_settings(node)['cluster.name']}.log"]
    for path in paths:
        if path.exists() and path.stat().st_size:
            text = [line[:300] for line in path.read_text(errors="replace").splitlines()[-lines:]]
            return f"--- {path} (last {len(text)} lines)\n" + "\n".join(text)
    return f"(no log output in {node.dir})"


def prepare_node_dir(node: Node, home: Path, user: pwd.struct_passwd | None) -> None:
    for sub in ("data", "logs", "tmp"):
        (node.dir / sub).mkdir(parents=True, exist_ok=True)
    config = node.dir / "config"
    if not config.is_dir():
        shutil.copytree(home / "config", config)
        anchor_jvm_paths(config / "jvm.options", node.dir)
    chown_tree(node.dir, user)


def anchor_jvm_paths(jvm_options: Path, node_dir: Path) -> None:
    """OpenSearch's launcher runs from the distribution, so its relative `logs/` and `data` paths
    would point into the shared (read-only) distribution; point them at the node's own dirs."""
    text = jvm_options.read_text()
    for relative in ("logs/", "data"):
        text = re.sub(rf"(?<=[=:]){relative}", f"{node_dir}/{relative}", text)
    jvm_options.write_text(text)


def launch(node: Node) -> int:
    """Start the node's process in its own session and return its PID (without waiting)."""
    engine = node.engine
    if engine.version is None:
        raise EngineError(missing_prerequisites(engine) or engine.name)
    java = find_java(engine)
    home = unpack(engine)
    user = run_as()
    check_reachable(home / "bin", user)
    prepare_node_dir(node, home, user)
    cmd = [str(home / "bin" / engine.product)]
    for key, value in node_settings(node).items():
        cmd += ["-E", f"{key}={value}"]
    node.console.write_text("")
    chown_tree(node.console, user)
    with node.console.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=node.dir,
            env=node_env(engine, node, java, user),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the JVM children
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
    node.pid_file.write_text(f"{proc.pid}\n")
    java_version = java_major(java)
    log(f"{node.name}: {engine.product} {engine.version} on Java {java_version}, pid {proc.pid}")
    return proc.pid


def wait_ready(node: Node, pid: int, timeout: float = START_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = engine_info(node.url)
        if body is not None:
            return body
        if read_pid(node) != pid or _exited(pid):
            raise EngineError(f"{node.name} exited during start-up.\n{log_tail(node)}")
        time.sleep(0.5)
    stop_node(node)
    raise EngineError(
        f"{node.name} did not answer {node.url} within {timeout:.0f}s.\n{log_tail(node)}"
    )


def _exited(pid: int) -> bool:
    """Reap our own child if it died (a zombie still answers kill(pid, 0))."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False  # not our child: read_pid() already checked it is alive
    return done == pid


def start_node(node: Node) -> str:
    """Start `node` unless it already runs; return its URL once it answers `GET /`."""
    pid = read_pid(node)
    if pid is not None and engine_info(node.url) is not None:
        return node.url
    if pid is None and port_in_use(node.http_port):
        raise EngineError(
            f"port {node.http_port} is taken by a process not started from {ENGINES_DIR}; "
            "stop it, or point the tests at it with MATCH_TEST_ENGINES"
        )
    if pid is None:
        pid = launch(node)
    wait_ready(node, pid)
    return node.url


def start_nodes(nodes: Iterable[Node]) -> list[str]:
    """Launch every node first, then wait for each: start-up then overlaps."""
    nodes = list(nodes)
    pids: dict[str, int] = {}
    try:
        for node in nodes:
            if read_pid(node) is None:
                pids[node.name] = launch(node)
        for node in nodes:
            wait_ready(node, pids.get(node.name) or read_pid(node) or -1)
    except BaseException:
        for node in nodes:  # leave nothing half-started behind
            if node.name in pids:
                stop_node(node)
        raise
    return [node.url for node in nodes]


def stop_node(node: Node) -> bool:
    """SIGTERM the node's process group, SIGKILL it after STOP_TIMEOUT. True if one was running."""
    pid = read_pid(node)
    if pid is None:
        node.pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and _group_alive(pid):
        _exited(pid)
        time.sleep(0.2)
    if _group_alive(pid):
        log(f"{node.name}: still running after {STOP_TIMEOUT:.0f}s, killing")
        _signal_group(pid, signal.SIGKILL)
    _exited(pid)
    node.pid_file.unlink(missing_ok=True)
    log(f"{node.name}: stopped (pid {pid})")
    return True


def kill_node(node: Node) -> bool:
    """SIGKILL the node's process group at once, as a crash would (fault tests); its data is
    left as the crash leaves it, for `start_node` to recover. True if one was running."""
    pid = read_pid(node)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and _group_alive(pid):
        _exited(pid)  # reap our child, else its zombie keeps the group alive
        time.sleep(0.05)
    node.pid_file.unlink(missing_ok=True)
    log(f"{node.name}: killed (pid {pid})")
    return True


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_rss_mb(pgid: int) -> int:
    """Resident memory of the node's whole process group (launcher and JVM), in MB."""
    done = subprocess.run(
        ["ps", "-o", "rss=", "-g", str(pgid)], capture_output=True, text=True, check=False
    )
    return sum(int(v) for v in done.stdout.split() if v.isdigit()) // 1024


def known_nodes() -> list[Node]:
    """Every node directory with a PID file, including ones started by bench scripts."""
    found = []
    for pid_file in sorted((ENGINES_DIR / "nodes").glob("*/launcher.pid")):
        name = pid_file.parent.name
        engine = ENGINES.get(name.split("-")[0], ENGINES["es8"])
        found.append(Node(engine, name, 0, 0))
    return found


# --- command line --------------------------------------------------------------------------------


def engine_named(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}") from None


def status_line(engine: Engine) -> str:
    node = default_node(engine)
    pid = read_pid(node)
    body = engine_info(node.url, timeout=1.0) if pid else None
    state = (
        f"running pid {pid}, {body['distribution']} {body['number']}, RSS {group_rss_mb(pid)} MB"
        if body
        else f"pid {pid} not answering"
        if pid
        else "stopped"
    )
    why = missing_prerequisites(engine)
    return f"{engine.name}  {engine.product:13} {engine.version or '-':8} {node.url}  {state}" + (
        f"  [cannot start: {why}]" if why and not pid else ""
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", choices=["start", "stop", "fetch", "url", "start-all", "stop-all", "status"]
    )
    parser.add_argument("engines", nargs="*", help=f"engine names: {', '.join(ENGINES)}")
    args = parser.parse_args(argv)
    try:
        return run_command(args.command, args.engines)
    except EngineError as exc:
        print(f"engines: error: {exc}", file=sys.stderr)
        return 1


def run_command(command: str, names: list[str]) -> int:
    if command in {"start", "stop", "fetch", "url"} and not names:
        raise EngineError(f"{command} needs an engine name: {', '.join(ENGINES)}")
    engines = [engine_named(n) for n in names]
    if command == "start":
        for url in start_nodes(default_node(e) for e in engines):
            print(url)
    elif command == "stop":
        for engine in engines:
            stop_node(default_node(engine))
    elif command == "fetch":
        for engine in engines:
            print(unpack(engine))
    elif command == "url":
        for engine in engines:
            print(engine.url)
    elif command == "start-all":
        startable = [e for e in ENGINES.values() if missing_prerequisites(e) is None]
        for engine in set(ENGINES.values()) - set(startable):
            log(f"skipping {missing_prerequisites(engine)}")
        for engine, url in zip(startable, start_nodes(map(default_node, startable)), strict=True):
            print(f"{engine.name}={url}")
    elif command == "stop-all":
        for node in known_nodes():
            stop_node(node)
    elif command == "status":
        for engine in ENGINES.values():
            print(status_line(engine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
