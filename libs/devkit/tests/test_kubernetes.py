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


def test_service_listeners_are_container_and_service_ports() -> None:
    """xray's DICOM SCP: a named container port, its ``XRAY_DICOM_PORT`` and a port of the
    ``healthflow-xray`` Service, so in-cluster modalities and routers reach it."""
    documents = list(yaml.safe_load_all((K8S / "healthflow.yaml").read_text()))
    listening = {n: m for n, m in SERVICES.items() if m.listeners}
    assert "xray" in listening
    for name, manifest in listening.items():
        deployment, service = (next(d for d in documents if d["kind"] == kind
                                    and d["metadata"]["name"] == f"healthflow-{name}")
                               for kind in ("Deployment", "Service"))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e["value"] for e in container["env"]}
        served = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
        for listener, port in manifest.listeners.items():
            assert ports[listener] == port and served[listener] == (port, listener)
        for key, port in manifest.listener_env().items():
            assert env[key] == str(port)


def test_a_service_gets_the_address_of_each_service_it_calls() -> None:
    documents = list(yaml.safe_load_all((K8S / "healthflow.yaml").read_text()))
    assert "prescription" in SERVICES["records"].calls
    for name, manifest in SERVICES.items():
        deployment = next(d for d in documents if d["kind"] == "Deployment"
                          and d["metadata"]["name"] == f"healthflow-{name}")
        env = {e["name"]: e.get("value")
               for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        for callee in manifest.calls:
            assert env[f"{callee.upper()}_URL"] == \
                f"http://healthflow-{callee}:{SERVICES[callee].port}"


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


def test_services_storing_private_keys_read_the_kek_from_a_mounted_secret() -> None:
    documents = list(yaml.safe_load_all((K8S / "healthflow.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    for name in ("auth", "notification"):
        pod = deployments[f"healthflow-{name}"]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        path = {e["name"]: e for e in container["env"]}["KEY_ENCRYPTION_KEYS_FILE"]["value"]
        mount = next(m for m in container["volumeMounts"]
                     if path.startswith(m["mountPath"] + "/"))
        assert mount["readOnly"] is True
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "healthflow-key-encryption"
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    patient = deployments["healthflow-patient"]["spec"]["template"]["spec"]["containers"][0]
    assert all(e["name"] != "KEY_ENCRYPTION_KEYS_FILE" for e in patient["env"])


def test_the_client_address_reaches_auth_through_the_ingress_and_the_gateway() -> None:
    """Issue 16: the gateway trusts one hop (the Ingress), auth the pod network's
    X-Forwarded-For (the gateway's pods), so login budgets are per client address."""
    documents = list(yaml.safe_load_all((K8S / "healthflow.yaml").read_text()))

    def env_of(name: str) -> dict[str, str]:
        deployment = next(d for d in documents if d["kind"] == "Deployment"
                          and d["metadata"]["name"] == f"healthflow-{name}")
        return {e["name"]: e.get("value")
                for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert env_of("gateway")["GATEWAY_TRUSTED_PROXY_HOPS"] == "1"
    assert env_of("auth")["AUTH_TRUSTED_PROXIES"] == '["${POD_CIDR}"]'
    assert "$POD_CIDR" in (K8S / "healthflow.yaml").read_text().splitlines()[1]
    assert all("AUTH_TRUSTED_PROXIES" not in env_of(n) for n in SERVICES if n != "auth")
