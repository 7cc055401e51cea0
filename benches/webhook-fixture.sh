# Sourced by the webhook benches: writes into "$work" a CA and the webhook's serving
# certificate (made by "$bin"), the bench policy, and a realistic review (review.json).
# Needs $bin and $work.

"$bin" certs init --dir "$work" 2>/dev/null
"$bin" certs server --dir "$work" --name webhook --dns localhost --ip 127.0.0.1 2>/dev/null
cat > "$work/policy.yaml" <<'POLICY'
clusters:
  - name: cluster1
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
POLICY

# A realistic review: a cluster's repository credentials, created through the relay (~2 KB).
python3 - "$work/review.json" <<'PY'
import base64, json, sys
data = {k: base64.b64encode(v.encode()).decode() for k, v in {
    "url": "https://git.example.com/platform/deployments.git",
    "username": "deploy-bot",
    "password": "x" * 40,
    "sshPrivateKey": "k" * 700,
}.items()}
secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
          "metadata": {"name": "repo-platform", "namespace": "argocd",
                       # Opted in, as every hub copy a cluster writes must be (else /validate
                       # measures a denial: rule not-opted-in).
                       "labels": {"argocd.argoproj.io/secret-type": "repository", "team": "platform",
                                  "akuity.io/secret-sync": "true"},
                       "annotations": {"akuity.io/managed-secret-allowed-clusters": "cluster2,cluster3"}},
          "data": data}
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "0b7c6a4e-8d3f-4b1e-9f2a-5c6d7e8f9a0b",
    "kind": {"group": "", "version": "v1", "kind": "Secret"},
    "resource": {"group": "", "version": "v1", "resource": "secrets"},
    "requestKind": {"group": "", "version": "v1", "kind": "Secret"},
    "requestResource": {"group": "", "version": "v1", "resource": "secrets"},
    "name": "repo-platform", "namespace": "argocd", "operation": "CREATE",
    "userInfo": {"username": "secret-relay:cluster:cluster1",
                 "groups": ["secret-relay:clusters", "system:authenticated"]},
    "object": secret, "oldObject": None, "dryRun": False,
    "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}
secret["metadata"]["labels"]["secret-relay.io/owner"] = "cluster.cluster1"
open(sys.argv[1], "w").write(json.dumps(review))
PY
