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
    "CONVOY_NATS_URL",
    "CONVOY_SECRET_KEY",
    "CONVOY_ADMIN_TOKEN",
    "CONVOY_ACTOR_SIGNING_KEY",
    "CONVOY_REPLY_SIGNING_KEY",
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
        source = secret["environment"]
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
    assert sorted(re.findall(r"nats-route://([\w-]+):6222", conf)) == sorted(nats)
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
