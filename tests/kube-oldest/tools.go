//go:build tools

// Package tools pins the oldest Kubernetes secret-relay supports: 1.30, where the
// webhook configurations' matchConditions went GA. `SECRET_RELAY_KUBE=oldest`
// makes scripts/control-plane.sh and scripts/node.sh run these commands (etcd stays
// tests/kube's); docs/real-node.md says how the deployed suite runs on them.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
