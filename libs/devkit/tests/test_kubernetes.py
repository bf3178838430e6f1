"""The Kubernetes manifests are the ones the service manifests generate (``make docs``)."""

from pathlib import Path

import yaml

from healthflow.common.topology import GATEWAY_PORT, SERVICES
from healthflow.devkit.kubernetes import render

K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"


def test_the_kubernetes_manifests_are_current() -> None:
    expected = render((K8S / "service.yaml").read_text(), SERVICES.values(), GATEWAY_PORT)
    assert (K8S / "healthflow.yaml").read_text() == expected, (
        "deploy/k8s/healthflow.yaml is out of date: run `make docs`")


def test_every_service_and_the_gateway_get_a_deployment_service_and_autoscaler() -> None:
    documents = list(yaml.safe_load_all((K8S / "healthflow.yaml").read_text()))
    names = [*SERVICES, "gateway"]
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler"):
        assert sorted(d["metadata"]["name"] for d in documents if d["kind"] == kind) == sorted(
            f"healthflow-{n}" for n in names), kind
    ports = {d["metadata"]["name"]: d["spec"]["ports"][0]["port"]
             for d in documents if d["kind"] == "Service"}
    assert ports == {**{f"healthflow-{n}": m.port for n, m in SERVICES.items()},
                     "healthflow-gateway": GATEWAY_PORT}
    gateway = next(d for d in documents
                   if d["kind"] == "Deployment" and d["metadata"]["name"] == "healthflow-gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    for name, manifest in SERVICES.items():
        assert env[f"GATEWAY_UPSTREAM_{name.upper()}"] == f"http://healthflow-{name}:{manifest.port}"
    assert env["JWKS_URL"] == f"http://healthflow-auth:{SERVICES['auth'].port}/.well-known/jwks.json"


def test_audit_gets_its_signing_key_from_a_secret_and_a_writable_checkpoint_volume() -> None:
    documents = list(yaml.safe_load_all((K8S / "healthflow.yaml").read_text()))
    audit = next(d for d in documents
                 if d["kind"] == "Deployment" and d["metadata"]["name"] == "healthflow-audit")
    pod = audit["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["AUDIT_CHECKPOINT_SIGNING_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "healthflow-audit-signing", "key": "AUDIT_CHECKPOINT_SIGNING_KEY"}
    assert "AUDIT_ALLOW_GENERATED_SIGNING_KEY" not in env
    directory = env["AUDIT_CHECKPOINT_DIR"]["value"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim
               for d in documents)
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
