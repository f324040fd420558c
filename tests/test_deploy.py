"""deploy/ cannot run here (no container engine, no cluster), so it is checked instead.

The compose file parses and agrees with `questlog services` and the settings
names; the NATS config passes `nats-server -t`; the k8s manifests validate
against the Kubernetes schemas kubernetes-validate ships (offline, strict);
the dashboard only charts metrics the code exports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from questlog.services.cli.roster import services
from questlog.services.runtime.embedded import find_nats_server
from questlog.services.runtime.settings import _ENV, load_settings
from questlog.services.runtime.telemetry import setup_telemetry

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.29.0"  # the oldest Kubernetes the manifests promise to work on
SERVICE_NAMES = list(services())
WORKERS = [s for s in SERVICE_NAMES if s != "gateway"]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def substituted(env: dict[str, str]) -> dict[str, str]:
    """Compose's `${VAR:-default}` / `${VAR:?message}` as compose would fill them in."""

    def fill(value: str) -> str:
        def one(m: re.Match[str]) -> str:
            name, op, arg = m.group(1), m.group(2), m.group(3)
            if op == ":-":
                return arg
            return "x" * 32 if "SECRET" in name else "1"

        return re.sub(r"\$\{(\w+)(:-|:\?)([^}]*)\}", one, value)

    return {k: fill(str(v)) for k, v in env.items()}


# -- compose ---------------------------------------------------------------------


def test_compose_runs_every_service_with_its_own_command() -> None:
    svc = compose()["services"]
    runs: dict[str, list[str]] = {}
    for name, spec in svc.items():
        cmd = spec.get("command") or []
        if cmd[:1] == ["run"]:
            runs.setdefault(cmd[1], []).append(name)
    assert set(runs) == set(SERVICE_NAMES), "every `questlog services` entry runs, and nothing else"
    for worker in WORKERS:
        assert runs[worker] == [worker]
    assert sorted(runs["gateway"]) == ["gateway-1", "gateway-2"]
    for names in runs.values():
        for name in names:
            assert svc[name]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_settings_are_names_the_settings_know_and_load() -> None:
    svc = compose()["services"]
    for name, spec in svc.items():
        if (spec.get("command") or [""])[0] != "run":
            continue
        env = substituted(spec["environment"])
        unknown = {k for k in env if k.startswith("QUESTLOG_") and k not in _ENV}
        assert not unknown, f"{name}: {unknown} are not settings"
        settings = load_settings(env)  # raises on a bad value
        assert settings.replicas == 3, "R3 streams on the cluster"
        assert settings.metrics_port == 9464
        assert [u.split("//")[1] for u in settings.nats_url.split(",")] == [
            "nats-1:4222",
            "nats-2:4222",
            "nats-3:4222",
        ]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


def test_compose_has_the_cluster_redis_balancer_and_observability() -> None:
    svc = compose()["services"]
    for i in (1, 2, 3):
        node = svc[f"nats-{i}"]
        assert node["environment"]["SERVER_NAME"] == f"nats-{i}"
        assert any(v.startswith("./nats/cluster.conf:") for v in node["volumes"])
    for name in ("redis", "lb", "otel-collector", "prometheus", "grafana", "jaeger"):
        assert name in svc
    for spec in svc.values():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{source} is mounted but missing"


def test_nats_cluster_config_is_accepted_by_nats_server() -> None:
    conf = DEPLOY / "nats" / "cluster.conf"
    text = conf.read_text()
    assert all(f"nats-route://nats-{i}:6222" in text for i in (1, 2, 3))
    proc = subprocess.run(
        [find_nats_server(), "-t", "-c", str(conf)],
        env={**os.environ, "SERVER_NAME": "nats-1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_balancer_upgrades_websockets_to_both_gateways() -> None:
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert "server gateway-1:8080" in conf and "server gateway-2:8080" in conf
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    assert "proxy_http_version 1.1" in conf


def test_prometheus_scrapes_every_service_and_the_collector_exports() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    names = jobs["questlog"]["dns_sd_configs"][0]["names"]
    assert set(names) == set(WORKERS) | {"gateway-1", "gateway-2"}
    col = yaml.safe_load((DEPLOY / "otel-collector" / "config.yaml").read_text())
    for pipeline in col["service"]["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(col["receivers"])
        assert set(pipeline["processors"]) <= set(col["processors"])
        assert set(pipeline["exporters"]) <= set(col["exporters"])


def test_dashboard_charts_only_metrics_the_code_exports() -> None:
    t = setup_telemetry("x", environ={}, registry=CollectorRegistry(), install_global=False)
    m = t.metrics
    m.command_handled("m", "ok", 0.01)
    m.append_finished(["t"], "ok", 0.01)
    m.message_taken("c", "handled")
    m.lag("c", 0)
    m.connection_opened()
    m.recovery(True, 1)
    m.refused_by_rate_limit("method")
    exported = set(re.findall(r"^(questlog_\w+?)(?:\{| )", t.prometheus_text().decode(), re.M))
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "questlog.json").read_text())
    used = {name for p in dash["panels"] for tgt in p["targets"] for name in re.findall(r"questlog_\w+", tgt["expr"])}
    assert used, "the dashboard charts something"
    assert used <= exported, f"charted but never exported: {used - exported}"


def test_dockerfile_copies_every_package_dir_and_runs_questlog() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert 'ENTRYPOINT ["questlog"]' in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = {d.split("/")[0] for d in project["tool"]["setuptools"]["package-dir"].values()}
    for d in dirs:
        assert f"COPY {d} {d}" in text, f"the image misses {d}/"
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert not dirs & set(ignored)


# -- kubernetes ------------------------------------------------------------------


@pytest.mark.parametrize("strict", [True], ids=["strict"])
def test_k8s_manifests_validate_against_their_schemas(strict: bool) -> None:
    objects = k8s_objects()
    assert objects
    for filename, obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=strict)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise AssertionError(f"{filename} {obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}") from None


def test_validation_really_rejects_a_broken_manifest() -> None:
    (_, deployment) = next((f, o) for f, o in k8s_objects() if o["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/typo"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_k8s_has_a_deployment_per_service_and_a_draining_gateway() -> None:
    objects = [o for _, o in k8s_objects()]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert set(deployments) == set(SERVICE_NAMES)
    for name, dep in deployments.items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["run", name]
        refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in container["envFrom"]}
        assert refs == {"questlog-config", "questlog-secrets"}
    gw = deployments["gateway"]["spec"]
    pod = gw["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert gw["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdbs = {o["metadata"]["name"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert {"gateway", "nats"} <= pdbs
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats"]
    assert sts["spec"]["replicas"] == 3


def test_k8s_config_map_holds_only_known_settings() -> None:
    (cm,) = [o for _, o in k8s_objects() if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "questlog-config"]
    (secret,) = [o for _, o in k8s_objects() if o["kind"] == "Secret"]
    env = {**cm["data"], **secret["stringData"]}
    assert {k for k in env if k.startswith("QUESTLOG_")} <= set(_ENV)
    settings = load_settings(env)
    assert settings.replicas == 3 and settings.metrics_port == 9464


def test_nats_k8s_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    (cm,) = [o for _, o in k8s_objects() if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-config"]
    conf = tmp_path / "nats.conf"
    conf.write_text(cm["data"]["nats.conf"])
    proc = subprocess.run(
        [find_nats_server(), "-t", "-c", str(conf)],
        env={**os.environ, "POD_NAME": "nats-0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
