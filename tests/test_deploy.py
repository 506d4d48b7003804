"""The deployment files: the image, Compose, Kubernetes; and the probes and secret files they rely on.

No Docker engine or cluster runs on these machines, so the files are checked the way CI can:
hadolint for the Dockerfile, the Compose specification's JSON schema (vendored in
check-jsonschema), the Kubernetes schemas (shipped in the kubernetes-validate wheel), and
cross-checks against the project itself (every service exists, every CONVOY_* variable is a setting).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import nats
import pytest
import yaml

from schemas.subjects import Subjects
from services import embedded
from services.registry import BACKEND_MODULES, PROCESSES, backend
from services.runtime import settings as settings_mod
from services.runtime.service import serve
from services.runtime.settings import Settings
from tests.conftest import SmtpSink, delete_streams, eventually
from tests.world import appoint_facilitator

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
SETTINGS = {variable for variable, _, _ in settings_mod.describe()}
SECRETS = {
    "CONVOY_DATABASE_URL",
    "CONVOY_NATS_PASSWORD",
    "CONVOY_SECRET_KEY",
    "CONVOY_ADMIN_TOKEN",
    "CONVOY_ACTOR_SIGNING_KEY",
    "CONVOY_REPLY_SIGNING_KEY",
    "CONVOY_NOTIFIER_BOX_KEY",
}
"""Settings that hold credentials: set only through *_FILE (a mounted secret), never as a plain value."""
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
"""The oldest Kubernetes the manifests target and the newest the validator knows."""


def is_setting(variable: str) -> bool:
    return variable in SETTINGS or (variable.endswith("_FILE") and variable.removesuffix("_FILE") in SETTINGS)


# --- the image ------------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_one_slim_non_root_image_for_every_service() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) >= 2 and all(s.startswith("python:3.11-slim") for s in stages), stages
    final = text.rsplit("\nFROM ", 1)[1]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["convoy"]' in final and 'CMD ["run", "api"]' in final
    assert "COPY --from=build" in final and "pip install" not in final  # no build tools in the runtime stage
    # What it copies exists, and .dockerignore lets exactly that in.
    copied = re.findall(r"^COPY (?!--)(.+) \S+$", text, re.M)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), source
            assert f"!{source}" in ignore, f".dockerignore keeps {source} out of the build context"


# --- Compose --------------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_two_replicas_of_every_convoy_process_with_health_checks() -> None:
    services = compose()["services"]
    convoy = {name: s for name, s in services.items() if "convoy" in str(s.get("image", ""))}
    run = {}
    for name, service in convoy.items():
        command = service["command"]
        if command[0] == "run":
            assert command[1] in PROCESSES, f"{name} runs {command[1]}, which is no Convoy process"
            run[command[1]] = service
        else:
            assert command == ["migrate"], command
    assert set(run) == set(PROCESSES)
    for process, service in run.items():
        assert service["deploy"]["replicas"] == 2, process
        assert service["restart"] in ("unless-stopped", "always"), process
        assert service["healthcheck"]["test"] == ["CMD", "convoy", "health", process]
        assert service["environment"]["CONVOY_OPS_PORT"] or process == "api"
        assert service["environment"]["CONVOY_STREAM_REPLICAS"] == "3"
    for name, service in services.items():
        assert "healthcheck" in service or service.get("restart") == "no", f"{name} has no health check"
        assert "restart" in service, f"{name} has no restart policy"


def test_compose_sets_only_real_settings_and_secrets_only_as_files() -> None:
    doc = compose()
    for name, service in doc["services"].items():
        environment = service.get("environment", {})
        mounted = {f"/run/secrets/{s}" for s in service.get("secrets", [])}
        for variable, value in environment.items():
            if not variable.startswith("CONVOY_"):
                continue
            assert is_setting(variable), f"{name}: {variable} is not a Convoy setting (see `convoy config`)"
            assert variable not in SECRETS, f"{name}: {variable} must come from a file ({variable}_FILE)"
            if variable.endswith("_FILE"):
                assert value in mounted, f"{name}: {variable} points at {value}, which is not mounted"
    for secret in doc["secrets"].values():
        source = secret.get("environment", "")
        assert not source.startswith("CONVOY_") or is_setting(source), source
    example = (DEPLOY / ".env.example").read_text()
    for variable in re.findall(r"^(CONVOY_\w+)=", example, re.M):
        assert is_setting(variable), f".env.example: {variable} is not a Convoy setting"


def test_compose_nats_is_a_three_node_jetstream_cluster_and_postgres_has_room_for_every_pool() -> None:
    doc = compose()
    services = doc["services"]
    nats = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("nats:")}
    assert sorted(nats) == ["nats-0", "nats-1", "nats-2"]
    assert sorted(s["environment"]["NATS_SERVER_NAME"] for s in nats.values()) == sorted(nats)
    conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
    assert "jetstream" in conf and "sync_interval: always" in conf
    for service in nats.values():
        routes = [v for k, v in service["environment"].items() if k.startswith("NATS_ROUTE_URL_")]
        assert sorted(
            re.findall(r"nats-route://route:\$\{NATS_ROUTE_PASSWORD\}@([\w-]+):6222", " ".join(routes))
        ) == sorted(nats)
    assert doc["configs"]["nats_conf"]["file"] == "./nats/nats-server.conf"

    command = services["postgres"]["command"]
    max_connections = int(next(c.split("=")[1] for c in command if c.startswith("max_connections=")))
    budget = 0
    for name in BACKEND_MODULES:
        env = services[name]["environment"]
        pool = int(env["CONVOY_DB_POOL_MAX"])
        extra = 1 + (1 if name == "reminders" else 0)  # outbox relay; reminders' leader lock
        budget += services[name]["deploy"]["replicas"] * (pool + extra)
    assert budget + 10 <= max_connections * 0.8, (budget, max_connections)  # headroom for migrations, psql, backups


ROLES = ("api", "convoys", "milestones", "reminders", "notifier", "admin")
"""NATS users: one per Convoy process, `admin` for migrations, stream setup and the operator's CLI."""


def test_compose_gives_each_process_only_its_own_nats_user_over_tls() -> None:
    doc = compose()
    services = doc["services"]
    convoy = {name: s for name, s in services.items() if "convoy" in str(s.get("image", ""))}
    seen = set()
    for name, service in convoy.items():
        role = service["command"][1] if service["command"][0] == "run" else "admin"
        seen.add(role)
        env = service["environment"]
        assert env["CONVOY_NATS_USER"] == role, name
        assert env["CONVOY_NATS_PASSWORD_FILE"] == f"/run/secrets/nats_{role}_password", name
        passwords = [s for s in service["secrets"] if s.startswith("nats_") and s.endswith("_password")]
        assert passwords == [f"nats_{role}_password"], f"{name} holds {passwords}"
        assert all(url.startswith("tls://") for url in env["CONVOY_NATS_URL"].split(",")), name
        assert env["CONVOY_NATS_TLS_CA"] == "/run/secrets/nats_ca" and "nats_ca" in service["secrets"], name
        # Only the processes that use them get the database and the signing key.
        assert ("convoy_database_url" in service["secrets"]) == (role != "api"), name
        assert ("convoy_secret_key" in service["secrets"]) == (role in ("api", "notifier")), name
    assert seen == set(ROLES)
    for role in ROLES:
        assert doc["secrets"][f"nats_{role}_password"] == {"environment": f"NATS_{role.upper()}_PASSWORD"}
    assert doc["configs"]["nats_authorization"]["file"] == "./nats/authorization.conf"
    for name, service in services.items():
        if not str(service.get("image", "")).startswith("nats:"):
            continue
        assert "ports" not in service, f"{name} publishes a port"  # clients, routes, monitoring stay inside
        assert {f"NATS_{r.upper()}_PASSWORD" for r in ROLES} | {"NATS_ROUTE_PASSWORD"} <= set(service["environment"])
        targets = {m["target"] for m in service["secrets"]}
        assert targets == {"/etc/nats/tls/ca.crt", "/etc/nats/tls/tls.crt", "/etc/nats/tls/tls.key"}, targets
    example = (DEPLOY / ".env.example").read_text()
    for role in ROLES:
        assert f"NATS_{role.upper()}_PASSWORD=" in example


def test_nats_server_config_requires_tls_users_and_route_authorization() -> None:
    conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
    assert re.search(r"^http: 127\.0\.0\.1:8222", conf, re.M), "monitoring must listen on loopback only"
    client_tls = conf.split("\ntls {", 1)[1].split("}", 1)[0]
    assert "handshake_first: true" in client_tls and "/etc/nats/tls/tls.crt" in client_tls
    cluster = conf.split("\ncluster {", 1)[1]
    route_tls = cluster.split("tls {", 1)[1].split("}", 1)[0]
    assert "verify: true" in route_tls and "ca_file" in route_tls
    assert re.search(r"authorization \{\s*user: route\s*password: \$NATS_ROUTE_PASSWORD", cluster)
    assert "include ./authorization.conf" in conf and "no_auth_user" not in conf
    authorization = (DEPLOY / "nats" / "authorization.conf").read_text()
    assert "generated by `convoy nats-authorization`" in authorization
    users = dict(re.findall(r"user: (\w+), password: \$(NATS_\w+_PASSWORD)", authorization))
    assert users == {role: f"NATS_{role.upper()}_PASSWORD" for role in ROLES}


async def refused(**options: Any) -> BaseException:
    """The error one connection attempt with ``options`` ends in (the client closed, so nothing leaks)."""
    nc = nats.NATS()
    try:
        await nc.connect(**options, allow_reconnect=False, connect_timeout=3)
    except (OSError, nats.errors.Error) as exc:
        if nc._transport is not None:  # nats-py leaves the socket of a failed first attempt open
            nc._transport.close()
        return exc
    await nc.close()
    raise AssertionError(f"connected with {options}")


@dataclass
class DeployNats:
    """nats-server nodes run from deploy/nats/ itself (only paths and ports moved to the test's), with
    the certificates deploy/tls/make-dev-certs.sh makes."""

    folder: Path
    procs: list[subprocess.Popen[bytes]]

    @property
    def ca(self) -> Path:
        return self.folder / "tls" / "ca.crt"

    def make_certificates(self) -> None:
        tls = self.folder / "tls"
        tls.mkdir()
        script = tls / "make-dev-certs.sh"
        script.write_text((DEPLOY / "tls" / "make-dev-certs.sh").read_text())
        subprocess.run(["sh", str(script)], check=True, capture_output=True, timeout=60)
        (tls / "tls.crt").write_bytes((tls / "nats.crt").read_bytes())
        (tls / "tls.key").write_bytes((tls / "nats.key").read_bytes())

    def start(self, name: str, route: int, routes: list[int], route_password: str = "route-secret") -> dict[str, int]:  # noqa: S107
        """Start node ``name`` with its route port and the others'; its ports: client, http, route."""
        ports = {"client": embedded.free_port(), "http": embedded.free_port(), "route": route}
        node = self.folder / name
        node.mkdir()
        conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
        for old, new in (
            ("/etc/nats/tls/", f"{self.folder / 'tls'}/"),
            ("/data/jetstream", str(node / "js")),
            ("0.0.0.0:4222", f"127.0.0.1:{ports['client']}"),
            ("127.0.0.1:8222", f"127.0.0.1:{ports['http']}"),
            ("0.0.0.0:6222", f"127.0.0.1:{route}"),
            ("max_file_store: 50G", "max_file_store: 1G"),
        ):
            assert old in conf, old
            conf = conf.replace(old, new)
        (node / "nats-server.conf").write_text(conf)
        (node / "authorization.conf").write_text((DEPLOY / "nats" / "authorization.conf").read_text())
        env = {**os.environ, "NATS_SERVER_NAME": name, "NATS_ROUTE_PASSWORD": route_password}
        env |= {f"NATS_{role.upper()}_PASSWORD": f"{role}-secret" for role in ROLES}
        env |= {
            f"NATS_ROUTE_URL_{i}": f"nats-route://route:{route_password}@127.0.0.1:{routes[i % len(routes)]}"
            for i in range(3)
        }
        with (node / "nats.log").open("wb") as log:  # says why, should the server not start
            proc = subprocess.Popen(
                [embedded.nats_server_binary(), "-c", str(node / "nats-server.conf")], env=env, stderr=log
            )
        self.procs.append(proc)
        embedded.wait_for_port("127.0.0.1", ports["client"], 20, proc)
        return ports


@pytest.fixture
def deploy_nats(tmp_path: Path) -> Iterator[DeployNats]:
    nodes = DeployNats(tmp_path, [])
    nodes.make_certificates()
    try:
        yield nodes
    finally:
        for proc in nodes.procs:
            proc.terminate()
        for proc in nodes.procs:
            proc.wait(10)


async def routes_of(http_port: int) -> set[str]:
    async with httpx.AsyncClient(timeout=5) as http:
        routez = (await http.get(f"http://127.0.0.1:{http_port}/routez")).json()
    return {r.get("remote_name", "") for r in routez.get("routes") or []}


async def test_the_deploy_nats_config_forms_a_cluster_only_with_the_route_password(deploy_nats: DeployNats) -> None:
    """Three nodes route to each other over mutual TLS with the route password, and JetStream keeps
    R3 streams on them; a node with another route password does not get in."""
    from services.runtime import bus

    routes = [embedded.free_port() for _ in range(3)]
    nodes = [deploy_nats.start(f"nats-{i}", routes[i], routes) for i in range(3)]

    async def clustered() -> bool:
        for i, node in enumerate(nodes):
            if not await routes_of(node["http"]) >= {f"nats-{j}" for j in range(3)} - {f"nats-{i}"}:
                return False
        return True

    await eventually(clustered, timeout=30, interval=0.3)
    admin = Settings().with_(
        nats_url=f"tls://localhost:{nodes[0]['client']}",
        nats_user="admin",
        nats_password="admin-secret",
        nats_tls_ca=str(deploy_nats.ca),
    )
    nc = await bus.connect(admin, "convoy-admin", attempts_for_s=5)
    try:
        js = nc.jetstream(timeout=2)

        async def r3_works() -> bool:  # the admin may create Convoy's own streams only (least privilege)
            try:
                await bus.ensure_streams(js, Subjects("convoy"), 3)
            except Exception:
                return False
            return True

        await eventually(r3_works, timeout=30, interval=0.5)
        info = await js.stream_info(Subjects("convoy").events_stream)
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
    finally:
        await nc.close()

    intruder = deploy_nats.start("intruder", embedded.free_port(), routes, route_password="guessed")
    log = deploy_nats.folder / "intruder" / "nats.log"
    await eventually(lambda: _async_true("uthorization" in log.read_text()), timeout=20, interval=0.3)
    for i, node in enumerate(nodes):
        assert "intruder" not in await routes_of(node["http"]), f"nats-{i} routes to the intruder"
    assert not await routes_of(intruder["http"])


async def _async_true(value: bool) -> bool:
    return value


async def test_the_deploy_nats_config_admits_each_role_over_tls_and_nobody_else(deploy_nats: DeployNats) -> None:
    from services.runtime import bus

    route = embedded.free_port()
    port, ca = deploy_nats.start("nats-0", route, [route])["client"], deploy_nats.ca
    # The names in make-dev-certs.sh's certificate include localhost, so the check passes as in Compose.
    for role in ROLES:
        own = Settings().with_(
            nats_url=f"tls://localhost:{port}", nats_user=role, nats_password=f"{role}-secret", nats_tls_ca=str(ca)
        )
        nc = await bus.connect(own, f"convoy-{role}", attempts_for_s=5)
        assert nc.is_connected
        await nc.close()
    tls = bus.tls_options(Settings().with_(nats_tls_ca=str(ca)), [f"tls://localhost:{port}"])
    attempts: list[dict[str, Any]] = [
        {"servers": [f"tls://localhost:{port}"], **tls},  # anonymous
        {"servers": [f"tls://localhost:{port}"], "user": "api", "password": "notifier-secret", **tls},  # another's
        {"servers": [f"nats://localhost:{port}"], "user": "api", "password": "api-secret"},  # in clear
    ]
    for attempt in attempts:
        await refused(**attempt)


# --- Kubernetes -----------------------------------------------------------------------------------
def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name.endswith("values.yaml") or path.name == "kustomization.yaml":
            continue  # Helm values and the kustomize file list are no resources
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def test_every_kubernetes_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    docs = manifests()
    assert len(docs) > 10
    custom = []
    for path, doc in docs:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                custom.append((path, doc))  # a custom resource: the schema belongs to its operator
                break
            except kubernetes_validate.ValidationError as exc:
                where = f"{path.name}: {doc['kind']} {doc['metadata'].get('name')} (Kubernetes {version})"
                pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")
    # The only custom resources are CloudNativePG's; check what the operator requires.
    assert sorted(doc["kind"] for _, doc in custom) == ["Cluster", "ScheduledBackup"]
    cluster = next(doc for _, doc in custom if doc["kind"] == "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] >= 3 and spec["storage"]["size"]
    assert int(spec["postgresql"]["parameters"]["max_connections"]) >= 200
    assert spec["bootstrap"]["initdb"]["database"] == "convoy"
    assert spec["backup"]["barmanObjectStore"]["destinationPath"]
    backup = next(doc for _, doc in custom if doc["kind"] == "ScheduledBackup")
    assert backup["apiVersion"] == "postgresql.cnpg.io/v1" and backup["spec"]["cluster"]["name"] == "convoy-db"
    # kubectl apply -k picks up every manifest but the example Secret and the once-per-release Job.
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    files = {path.name for path, _ in docs} - {"secret.example.yaml", "migrate-job.yaml"}
    assert sorted(listed) == sorted(files)


def kinds(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def test_kubernetes_runs_every_process_with_probes_resources_and_disruption_budgets() -> None:
    deployments = kinds("Deployment")
    by_process = {}
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == "run" and container["args"][1] in PROCESSES, name
        by_process[container["args"][1]] = deployment
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in container, f"{name} has no {probe}"
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert deployment["spec"]["replicas"] >= 2
        shutdown = int(kinds("ConfigMap")["convoy-config"]["data"]["CONVOY_SHUTDOWN_TIMEOUT"])
        assert pod["terminationGracePeriodSeconds"] >= 3 * shutdown + 5  # work, NATS drain, pool: each bounded
        for variable in container.get("env", []):
            assert is_setting(variable["name"]) or not variable["name"].startswith("CONVOY_"), variable
            assert variable["name"] not in SECRETS or "valueFrom" in variable, f"{name}: {variable['name']} as text"
    assert set(by_process) == set(PROCESSES)
    api_probe = by_process["api"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert api_probe["exec"]["command"] == ["convoy", "health", "api"]
    for process in BACKEND_MODULES:
        probe = by_process[process]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["httpGet"]["path"] == "/health" and probe["httpGet"]["port"] == "ops"

    budgets = kinds("PodDisruptionBudget")
    selected = {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for b in budgets.values()}
    assert selected == set(PROCESSES)
    autoscaled = {h["spec"]["scaleTargetRef"]["name"] for h in kinds("HorizontalPodAutoscaler").values()}
    assert autoscaled == {by_process["api"]["metadata"]["name"], by_process["notifier"]["metadata"]["name"]}
    config = kinds("ConfigMap")["convoy-config"]["data"]
    assert all(is_setting(k) for k in config), [k for k in config if not is_setting(k)]
    assert config["CONVOY_STREAM_REPLICAS"] == "3" and not SECRETS & set(config)


def test_nats_helm_values_ask_for_three_jetstream_nodes_on_file_storage() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    assert values["config"]["cluster"]["enabled"] is True and values["config"]["cluster"]["replicas"] == 3
    jetstream = values["config"]["jetstream"]
    assert jetstream["enabled"] is True and jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["size"]
    assert values["config"]["merge"]["max_payload"] == 8 * 1024 * 1024


def projected_secrets(pod: dict[str, Any]) -> set[str]:
    """Names of the Secrets a pod mounts (projected or plain secret volumes)."""
    names = set()
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def test_kubernetes_gives_each_pod_only_its_own_nats_user_and_the_secrets_it_uses() -> None:
    pods: dict[str, dict[str, Any]] = {}
    for deployment in kinds("Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        pods[pod["containers"][0]["args"][1]] = pod
    [job] = kinds("Job").values()
    pods["admin"] = job["spec"]["template"]["spec"]
    assert set(pods) == set(ROLES)
    for role, pod in pods.items():
        [container] = pod["containers"]
        env = {v["name"]: v.get("value") for v in container.get("env", [])}
        assert env["CONVOY_NATS_USER"] == role
        assert env["CONVOY_NATS_PASSWORD_FILE"] == "/run/secrets/convoy/nats_password"
        secrets = projected_secrets(pod)
        assert {s for s in secrets if s.startswith("convoy-nats-")} == {f"convoy-nats-{role}"}, (role, secrets)
        assert "nats-tls" in secrets and "nats-route" not in secrets
        assert ("convoy-db-app" in secrets) == (role != "api"), role
        keys = {
            item["key"]
            for volume in pod["volumes"]
            for source in volume.get("projected", {}).get("sources", [])
            if source.get("secret", {}).get("name") == "convoy-secrets"
            for item in source["secret"]["items"]
        }
        expected = {
            "api": {"secret_key", "admin_token", "actor_signing_key"},
            "notifier": {"secret_key", "smtp_url", "reply_signing_key", "notifier_box_key"},
        }.get(role, set())
        assert keys == expected, (role, keys)
    config = kinds("ConfigMap")["convoy-config"]["data"]
    assert config["CONVOY_NATS_URL"].startswith("tls://") and config["CONVOY_NATS_TLS_CA"]
    example = [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / "secret.example.yaml").read_text()) if doc]
    assert {d["metadata"]["name"] for d in example} >= {f"convoy-nats-{role}" for role in ROLES} | {"nats-route"}
    [smtp_url] = [d["stringData"]["smtp_url"] for d in example if d["metadata"]["name"] == "convoy-secrets"]
    assert smtp_url.startswith("smtps://") or "starttls=true" in smtp_url  # no relay password in clear


def test_nats_helm_values_ask_for_tls_route_authorization_and_convoys_users() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    config = values["config"]
    assert config["nats"]["tls"]["enabled"] and config["nats"]["tls"]["merge"]["handshake_first"] is True
    cluster = config["cluster"]
    assert cluster["tls"]["enabled"] and cluster["tls"]["merge"]["verify"] is True
    assert cluster["merge"]["authorization"]["user"] == "route"
    assert "$NATS_ROUTE_PASSWORD" in cluster["merge"]["authorization"]["password"]
    assert config["merge"]["$include"].endswith("/authorization.conf")
    env = values["container"]["env"]
    for role in ROLES:
        assert env[f"NATS_{role.upper()}_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"convoy-nats-{role}"
    # Kubernetes expands $(VAR) only from variables listed before; the chart lists them sorted by name.
    for name, value in env.items():
        for used in re.findall(r"\$\((\w+)\)", str(value)):
            assert used < name, f"{name} uses {used}, which the chart lists after it"
    assert values["service"]["ports"]["monitor"]["enabled"] is False and values["natsBox"]["enabled"] is False


# --- NetworkPolicies: evaluated the way Kubernetes does ----------------------------------------------
@dataclass(frozen=True)
class Peer:
    namespace: str | None  # None: outside the cluster
    labels: tuple[tuple[str, str], ...] = ()


def peer(namespace: str | None, labels: dict[str, str] | None = None) -> Peer:
    return Peer(namespace, tuple(sorted((labels or {}).items())))


NAMESPACE_LABELS = {
    ns: {"kubernetes.io/metadata.name": ns}
    for ns in ("convoy", "kube-system", "ingress-nginx", "monitoring", "cnpg-system")
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] in ("In", "NotIn"), expression
        found = labels.get(expression["key"]) in expression["values"]
        if found != (expression["operator"] == "In"):
            return False
    return True


def peer_matches(rule_peer: dict[str, Any], who: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        return who.namespace is None
    if who.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not selects(rule_peer["namespaceSelector"], NAMESPACE_LABELS[who.namespace]):
            return False
    elif who.namespace != policy_namespace:
        return False
    return selects(rule_peer.get("podSelector", {}), dict(who.labels))


def direction_allows(policies: list[dict[str, Any]], kind: str, pod: Peer, other: Peer, port: int) -> bool:
    """Whether ``pod`` (in the namespace) may send (Egress) to / receive (Ingress) from ``other`` on ``port``."""
    if pod.namespace != "convoy":
        return True  # other namespaces have their own policies; not ours to judge
    selecting = [
        p for p in policies if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], dict(pod.labels))
    ]
    if not selecting:
        return True
    key, peers_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if peers and not any(peer_matches(p, other, policy["metadata"]["namespace"]) for p in peers):
                continue
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            return True
    return False


def reachable(policies: list[dict[str, Any]], source: Peer, target: Peer, port: int) -> bool:
    return direction_allows(policies, "Egress", source, target, port) and direction_allows(
        policies, "Ingress", target, source, port
    )


def test_network_policies_deny_by_default_and_allow_only_what_each_process_needs() -> None:
    policies = list(kinds("NetworkPolicy").values())
    assert all(p["metadata"]["namespace"] == "convoy" for p in policies)
    convoy = {
        c: peer("convoy", {"app.kubernetes.io/name": "convoy", "app.kubernetes.io/component": c}) for c in PROCESSES
    }
    migrate = peer("convoy", {"app.kubernetes.io/name": "convoy", "app.kubernetes.io/component": "migrate"})
    nats_pod = peer("convoy", {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"})
    postgres = peer("convoy", {"cnpg.io/cluster": "convoy-db", "cnpg.io/podRole": "instance"})
    stranger = peer("convoy", {"app": "debug-shell"})  # any other pod someone starts in the namespace
    dns = peer("kube-system", {"k8s-app": "kube-dns"})
    ingress = peer("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    prometheus = peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
    operator = peer("cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"})
    internet = peer(None)
    data_owners = [convoy[c] for c in BACKEND_MODULES] + [migrate]

    def allowed(source: Peer, target: Peer, port: int) -> bool:
        return reachable(policies, source, target, port)

    # The edge: the API only through the ingress controller, on its HTTP port.
    assert allowed(ingress, convoy["api"], 8000)
    assert not allowed(internet, convoy["api"], 8000) and not allowed(stranger, convoy["api"], 8000)
    assert not allowed(ingress, convoy["convoys"], 9100) and not allowed(ingress, nats_pod, 4222)
    # Every Convoy process reaches NATS (client port) and DNS; only the data owners reach PostgreSQL.
    for pod in [*convoy.values(), migrate]:
        assert allowed(pod, nats_pod, 4222) and allowed(pod, dns, 53)
        assert not allowed(pod, nats_pod, 6222) and not allowed(pod, nats_pod, 8222)
        assert allowed(pod, postgres, 5432) == (pod in data_owners), pod
        assert allowed(pod, internet, 443) == (pod == convoy["notifier"]), pod
        assert not allowed(pod, internet, 80) and not allowed(pod, convoy["convoys"], 9100)
    for pod in convoy.values():
        assert allowed(prometheus, pod, 9100)
    # The notifier: out to SMTP relays and webhooks; in, email replies from anywhere.
    for port in (25, 465, 587, 443):
        assert allowed(convoy["notifier"], internet, port)
    assert allowed(internet, convoy["notifier"], 2526) and not allowed(internet, convoy["notifier"], 9100)
    # NATS: clients from Convoy's pods only, routes between the NATS pods, monitoring from nobody.
    assert allowed(nats_pod, nats_pod, 6222) and not allowed(nats_pod, internet, 443)
    for outsider in (stranger, internet, prometheus, postgres):
        assert not allowed(outsider, nats_pod, 4222) and not allowed(outsider, nats_pod, 8222)
    assert not allowed(stranger, postgres, 5432) and not allowed(internet, postgres, 5432)
    # PostgreSQL: replication between instances, the operator's status port, backups out over HTTPS.
    assert allowed(postgres, postgres, 5432) and allowed(operator, postgres, 8000)
    assert allowed(postgres, internet, 443) and not allowed(postgres, nats_pod, 4222)
    # Default deny: a pod nobody planned for talks to nothing but DNS.
    assert allowed(stranger, dns, 53) and not allowed(stranger, internet, 443)
    assert not allowed(ingress, stranger, 8080) and not allowed(internet, stranger, 22)


# --- Grafana ----------------------------------------------------------------------------------------
def test_grafana_dashboard_queries_only_metrics_convoy_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "convoy-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    # Every metric Convoy defines (prometheus_client adds _total to counters; histograms have
    # _bucket/_count/_sum); the API's come from Litestar's middleware with the prefix convoy_api.
    source = "\n".join(p.read_text() for f in ("services", "notifier", "convoy_api") for p in (ROOT / f).rglob("*.py"))
    defined = set(re.findall(r'(?:Counter|Histogram|Gauge)\(\s*"(convoy_\w+)"', source))
    assert 'prefix="convoy_api"' in source
    defined |= {"convoy_api_requests", "convoy_api_request_duration_seconds", "convoy_api_requests_in_progress"}
    for expr in exprs:
        for metric in re.findall(r"\b(convoy_\w+)", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", metric)
            assert base in defined, f"the dashboard queries {metric}, which no code exports"


# --- secrets from files, and the probes the deployments use ----------------------------------------
def test_settings_read_secrets_from_files(tmp_path: Path) -> None:
    key = tmp_path / "secret_key"
    key.write_text("key_from-a-file\n")
    assert settings_mod.load({"CONVOY_SECRET_KEY_FILE": str(key)}).secret_key == "key_from-a-file"
    # A plain variable wins over a file (so an operator can override one for a test).
    assert settings_mod.load({"CONVOY_SECRET_KEY_FILE": str(key), "CONVOY_SECRET_KEY": "k"}).secret_key == "k"
    port = tmp_path / "port"
    port.write_text("8080")
    assert settings_mod.load({"CONVOY_HTTP_PORT_FILE": str(port)}).http_port == 8080
    with pytest.raises(settings_mod.SettingsError, match="CONVOY_ADMIN_TOKEN_FILE"):
        settings_mod.load({"CONVOY_ADMIN_TOKEN_FILE": str(tmp_path / "missing")})


async def test_a_service_answers_probes_and_metrics_on_its_ops_port(settings: Settings) -> None:
    port = embedded.free_port()
    own = settings.with_(ops_port=port, http_host="127.0.0.1")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(backend("convoys"), own, stop))
    env = {**os.environ, "CONVOY_OPS_PORT": str(port), "CONVOY_HTTP_HOST": "127.0.0.1"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=30)
            health = (await http.get("/health")).json()
            assert health["service"] == "convoys" and health["ready"] and health["checks"]["database"] == "ok"
            assert (await http.get("/live")).json() == {"service": "convoys", "live": True}
            metrics = await http.get("/metrics")
            assert "convoy_rpc_handler_seconds" in metrics.text or "convoy_outbox_published" in metrics.text

        proc = await asyncio.create_subprocess_exec(
            str(BIN / "convoy"), "health", "convoys", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0 and out.startswith(b"convoys: ready"), out
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        nc = await nats.connect(settings.nats_url)
        await delete_streams(nc, Subjects(settings.namespace))
        await nc.close()
    # Stopped: the probe fails (and says why) instead of hanging.
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "convoy"), "health", "convoys", "--live", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and b"not answering" in err


# --- scale out: two replicas of every service on a three-node NATS cluster ---------------------------
@dataclass
class NatsCluster:
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-servers with JetStream, clustered over loopback (the shape of deploy/nats/)."""
    ports = [embedded.free_port() for _ in range(3)]
    routes = [embedded.free_port() for _ in range(3)]
    procs = []
    try:
        for i, (port, route) in enumerate(zip(ports, routes, strict=True)):
            folder = tmp_path / f"nats-{i}"
            folder.mkdir()
            conf = folder / "nats-server.conf"
            conf.write_text(
                f"server_name: nats-{i}\nlisten: 127.0.0.1:{port}\nmax_payload: 8MB\n"
                f'jetstream {{\n  store_dir: "{folder / "js"}"\n}}\n'
                f"cluster {{\n  name: convoy-test\n  listen: 127.0.0.1:{route}\n  routes: [\n"
                + "".join(f"    nats-route://127.0.0.1:{r}\n" for r in routes)
                + "  ]\n}\n"
            )
            procs.append(subprocess.Popen([embedded.nats_server_binary(), "-c", str(conf)], stderr=subprocess.DEVNULL))
        for port, proc in zip(ports, procs, strict=True):
            embedded.wait_for_port("127.0.0.1", port, 20, proc)
        yield NatsCluster(ports, procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


async def _wait_for_jetstream_quorum(url: str) -> None:
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream(timeout=2)

        async def r3_works() -> bool:
            try:
                await js.add_stream(name="QUORUM_PROBE", subjects=["quorum.probe"], num_replicas=3)
            except Exception:
                return False
            await js.delete_stream("QUORUM_PROBE")
            return True

        await eventually(r3_works, timeout=30, interval=0.5)
    finally:
        await nc.close()


async def _instances(nc: nats.NATS, micro_name: str, wait: float = 1.0) -> dict[str, int]:
    """Requests each running instance of a nats.micro service answered: {instance id: count}."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(f"$SRV.STATS.{micro_name}", b"", reply=inbox)
    answers: dict[str, int] = {}
    with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
        while True:
            msg = await sub.next_msg(timeout=wait)
            if not msg.data:  # "no responders" status: nothing registered yet
                break
            stats = json.loads(msg.data)
            answers[stats["id"]] = sum(e.get("num_requests", 0) for e in stats["endpoints"])
    await sub.unsubscribe()
    return answers


@pytest.mark.slow
async def test_two_replicas_of_every_service_share_the_work_and_handle_each_event_once(
    settings: Settings, nats_cluster: NatsCluster, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convoy_api.app import create_app
    from services.runtime.consumer import Consumer

    await _wait_for_jetstream_quorum(nats_cluster.url)
    own = settings.with_(
        nats_url=nats_cluster.url, stream_replicas=3, inbound_smtp_port=0, client_requests_per_minute=10000
    )
    # Which replica handled what: each replica has its own Runtime, so its own database pool.
    handled: list[tuple[str, int, str]] = []  # (consumer, replica's pool, event id)
    process = Consumer.process

    async def counted(self: Consumer, msg: Any, decoded: Any = None) -> None:
        await process(self, msg, decoded)
        handled.append((self.name, id(self.db), json.loads(msg.data)["id"]))

    monkeypatch.setattr(Consumer, "process", counted)
    subjects = Subjects(own.namespace)
    stops: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []
    nc = await nats.connect(nats_cluster.url.split(","))
    try:
        for name in BACKEND_MODULES:
            for _ in range(2):
                stop = asyncio.Event()
                stops.append(stop)
                tasks.append(asyncio.create_task(serve(backend(name), own, stop)))

            async def both_up(name: str = name) -> bool:
                if crashed := [t for t in tasks if t.done()]:
                    raise AssertionError(f"a replica of {name} ended: {crashed[0].exception()!r}")
                return len(await _instances(nc, subjects.micro_name(name), wait=0.3)) == 2

            await eventually(both_up, timeout=90)

        import uvicorn

        port = embedded.free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(own), host="127.0.0.1", port=port, log_config=None))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        api_task = asyncio.create_task(server.serve())
        await eventually(lambda: _started(server))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            facilitator = await appoint_facilitator(client, smtp_sink, f"frieda-{uuid.uuid4().hex[:6]}@zentrum.example")
            r = await client.post("/api/v1/convoys", json={"name": "Skaliert", "theme": "Webshop"}, headers=facilitator)
            assert r.status_code == 201, r.text
            convoy = r.json()["id"]
            invited = []
            for i in range(INVITATIONS):
                r = await client.post(
                    f"/api/v1/convoys/{convoy}/companies", json={"name": f"Firma {i}"}, headers=facilitator
                )
                assert r.status_code == 201, r.text
                email = f"rep-{i}-{uuid.uuid4().hex[:6]}@firma.example"
                r = await client.post(
                    f"/api/v1/convoys/{convoy}/companies/{r.json()['id']}/invitations",
                    json={"email": email, "name": f"Rep {i}", "language": "de"},
                    headers=facilitator,
                )
                assert r.status_code == 201, r.text
                invited.append(email)
            # Each invitation is mailed exactly once, whichever notifier replica took it. On a loaded
            # machine a pull fetch can expire just as JetStream hands it messages; those come again
            # after the consumer's ack wait (60 s), so a late email is waited for that long: what is
            # checked here is that it comes, and once.
            for email in invited:
                await smtp_sink.wait_for_mail_to(email, timeout=90)
            await asyncio.sleep(1.0)  # a duplicate would have arrived by now
            assert all(len(smtp_sink.to(email)) == 1 for email in invited)
        server.should_exit = True
        await asyncio.wait_for(api_task, 15)

        # Every event was handled once per consumer, and both replicas of a service took part.
        per_consumer: dict[str, list[str]] = {}
        replicas_seen: dict[str, set[int]] = {}
        for consumer, replica, event_id in handled:
            per_consumer.setdefault(consumer, []).append(event_id)
            service = consumer.removeprefix(f"{own.namespace}_").split("_")[0]
            replicas_seen.setdefault(service, set()).add(replica)
        for consumer, ids in per_consumer.items():
            assert len(ids) == len(set(ids)), f"{consumer} handled an event twice"
        assert len(per_consumer[subjects.consumer("notifier", "messages")]) >= INVITATIONS
        for service in ("milestones", "reminders", "notifier"):
            assert len(replicas_seen[service]) == 2, f"{service}: one replica did all the work"
        # Request/reply: the queue group spreads requests over both convoys replicas.
        answered = await _instances(nc, subjects.micro_name("convoys"))
        assert len(answered) == 2 and all(n > 0 for n in answered.values()), answered
        # Streams are replicated on all three nodes.
        info = await nc.jetstream().stream_info(subjects.events_stream)
        assert info.config.num_replicas == 3 and len(info.cluster.replicas or []) == 2
    finally:
        for stop in stops:
            stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await delete_streams(nc, subjects)
        await nc.close()
    assert not [r for r in results if isinstance(r, BaseException)], results


INVITATIONS = 24


async def _started(server: Any) -> bool:
    return bool(server.started)


# --- TLS and credentials on the NATS connection (deploy/ uses tls:// URLs and one user per process) ---
@pytest.fixture
def nats_tls(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A nats-server that speaks TLS from the first byte (as deploy/nats/ configures it), with a
    user `api`; yields its port and the file of the CA that signed its certificate."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server-key.pem"))
    port = embedded.free_port()
    conf = tmp_path / "nats-server.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'tls {{\n  cert_file: "{tmp_path / "server.pem"}"\n  key_file: "{tmp_path / "server-key.pem"}"\n'
        "  handshake_first: true\n}\n"
        "authorization {\n  users: [ { user: api, password: $NATS_API_PASSWORD } ]\n}\n"
    )
    env = {**os.environ, "NATS_API_PASSWORD": "api-secret"}
    proc = subprocess.Popen([embedded.nats_server_binary(), "-c", str(conf)], env=env, stderr=subprocess.DEVNULL)
    try:
        embedded.wait_for_port("127.0.0.1", port, 20, proc)
        yield port, tmp_path / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_services_reach_nats_over_verified_tls_with_their_own_user(nats_tls: tuple[int, Path]) -> None:
    from services.runtime import bus

    port, ca = nats_tls
    own = Settings().with_(
        nats_url=f"tls://127.0.0.1:{port}", nats_user="api", nats_password="api-secret", nats_tls_ca=str(ca)
    )
    nc = await bus.connect(own, "convoy-api", attempts_for_s=5)
    try:
        sub = await nc.subscribe("probe")
        await nc.publish("probe", b"over tls")
        assert (await sub.next_msg(timeout=5)).data == b"over tls"
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
    finally:
        await nc.close()
    # A server certificate no trusted CA signed (here: the system's CAs instead of ours) is refused,
    # and so is a wrong password. (bus.connect retries forever; one attempt shows why it fails.)
    for wrong, reason in (
        (own.with_(nats_tls_ca=""), "CERTIFICATE_VERIFY_FAILED"),
        (own.with_(nats_password="guess"), "uthorization"),
    ):
        exc = await refused(
            servers=[f"tls://127.0.0.1:{port}"],
            user=wrong.nats_user,
            password=wrong.nats_password,
            **bus.tls_options(wrong, [wrong.nats_url]),
        )
        assert reason in repr(exc), repr(exc)


async def test_a_tls_url_never_sends_the_password_in_clear_to_a_server_that_offers_no_tls() -> None:
    """An impostor on the network answers like a plain nats-server; the client opens with the TLS
    handshake, so the impostor sees a ClientHello and never the CONNECT with the password."""
    from services.runtime import bus

    received = bytearray()

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b'INFO {"server_id":"x","version":"2.15.1","proto":1,"max_payload":1048576,"auth_required":true}\r\n'
        )
        await writer.drain()
        with contextlib.suppress(Exception):
            while chunk := await asyncio.wait_for(reader.read(4096), 2):
                received.extend(chunk)
        writer.close()

    server = await asyncio.start_server(impostor, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        own = Settings().with_(nats_url=f"tls://127.0.0.1:{port}", nats_user="api", nats_password="api-secret")
        await refused(  # any failure will do, as long as nothing leaked
            servers=[own.nats_url],
            user=own.nats_user,
            password=own.nats_password,
            **bus.tls_options(own, [own.nats_url]),
        )
    finally:
        server.close()
        await server.wait_closed()
    assert received, "the client sent nothing at all"
    assert received[:1] == b"\x16"  # a TLS handshake record
    assert b"api-secret" not in received and b"CONNECT" not in received


def test_nats_tls_settings_that_cannot_work_are_refused() -> None:
    from services.runtime import bus

    s = Settings()
    with pytest.raises(settings_mod.SettingsError, match="mixes"):
        bus.tls_options(s, ["tls://nats-0:4222", "nats://nats-1:4222"])
    with pytest.raises(settings_mod.SettingsError, match="no tls://"):
        bus.tls_options(s.with_(nats_tls_ca="/ca.pem"), ["nats://nats-0:4222"])
    with pytest.raises(settings_mod.SettingsError, match="go together"):
        bus.tls_options(s.with_(nats_tls_cert="/c.pem"), ["tls://nats-0:4222"])
    assert bus.tls_options(s, ["nats://nats-0:4222"]) == {}
    assert bus.tls_options(s, ["tls://nats-0:4222"])["tls_handshake_first"] is True
