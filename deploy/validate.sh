#!/usr/bin/env bash
# Offline validation of the deployment recipes (run by .ci/run): every Kustomize overlay builds
# (`kubectl kustomize`), every core Kubernetes object passes `kubernetes-validate --strict`
# against the Kubernetes 1.32 schemas, the KServe objects (CRDs: no bundled schema) are checked
# for the fields KServe needs, the Slurm script parses, and the systemd unit passes
# `systemd-analyze verify` where systemd is installed. Nothing is applied to a cluster.
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=1.32.0
VENV="${PNO_DEPLOY_VENV:-$HOME/.cache/pno-physics-bench/venv-deploy}"
if ! command -v kubectl >/dev/null 2>&1; then
  echo "deploy: kubectl not found (needed for kubectl kustomize)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "kubernetes-validate==1.37.0" pyyaml
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for k in k8s/overlays/dev k8s/overlays/prod k8s/suite; do
  name=$(echo "$k" | tr '/' '-')
  kubectl kustomize "$k" > "$out/$name.yaml"
  echo "deploy: kustomize $k: $(grep -c '^kind:' "$out/$name.yaml") objects"
done
cp k8s/suite/merge-job.yaml "$out/merge-job.yaml"
"$VENV/bin/kubernetes-validate" -k "$K8S_VERSION" --strict "$out"/*.yaml
"$VENV/bin/python" - kserve/servingruntime.yaml kserve/inferenceservice.yaml <<'PY'
import sys, yaml
rt, isvc = (yaml.safe_load(open(p)) for p in sys.argv[1:3])
def need(cond, what):
    if not cond:
        sys.exit(f"deploy: kserve: {what}")
need(rt["apiVersion"] == "serving.kserve.io/v1alpha1" and rt["kind"] == "ServingRuntime", "ServingRuntime kind/apiVersion")
need("v2" in rt["spec"]["protocolVersions"], "the runtime speaks protocol v2")
c = rt["spec"]["containers"][0]
need(c["name"] == "kserve-container", "the container is named kserve-container")
need(any(p["containerPort"] == 8080 for p in c["ports"]), "the container listens on 8080")
need(c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready", "readiness on /v2/health/ready")
need("/mnt/models" in c["args"], "the repository is KServe's /mnt/models")
fmts = {(f["name"], str(f.get("version"))) for f in rt["spec"]["supportedModelFormats"]}
need(isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService", "InferenceService kind/apiVersion")
m = isvc["spec"]["predictor"]["model"]
need(m["runtime"] == rt["metadata"]["name"], "the InferenceService names the runtime")
need((m["modelFormat"]["name"], str(m["modelFormat"]["version"])) in fmts, "the model format is one the runtime supports")
need(m["protocolVersion"] == "v2", "the InferenceService asks for protocol v2")
print("deploy: kserve ServingRuntime + InferenceService: fields KServe needs are present (CRD shape, no schema)")
PY
bash -n slurm/suite-array.sbatch && echo "deploy: slurm script parses"
if command -v systemd-analyze >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemd-analyze verify --man=no systemd/pno-serve.service && echo "deploy: systemd unit verifies"
else
  echo "deploy: systemd unit NOT verified (no running systemd here; systemd-analyze verify needs one)"
fi
