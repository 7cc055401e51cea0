//go:build tools

// Package tools pins the Kubernetes commands a test node needs, from the same
// k8s.io/kubernetes version as the control plane in ../kube (scripts/node.sh
// checks that the two agree). A module of its own so that the control plane's
// go.sum, part of its cache key, does not change.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
