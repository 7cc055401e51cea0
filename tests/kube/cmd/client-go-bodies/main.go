// Command client-go-bodies records the request bodies that client-go's generated
// typed Secrets client sends, as fixtures for secret-relay-proxy's body decoder
// (proxy/src/body/tests.rs).
//
// It serves a fake API server on loopback (httptest), points two real clientsets
// at it and records each request's method, Content-Type and body:
//
//   - create.pb: Secrets(ns).Create with the default client configuration, which
//     client-go sends as protobuf (the typed Secrets client prefers protobuf);
//   - create.json: the same Secret created by a client configured with
//     ContentType application/json;
//   - apply.body: Secrets(ns).Apply of an apply configuration (server-side apply);
//   - index.json: [{"file", "method", "contentType"}] for the three.
//
// The Secret carries every field of Secret and ObjectMeta a write can hold. Its
// values are made up. From the repository root:
//
//	(cd tests/kube && go run ./cmd/client-go-bodies -out ../../proxy/tests/fixtures/client-go)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

type recorded struct {
	File        string `json:"file"`
	Method      string `json:"method"`
	ContentType string `json:"contentType"`
	body        []byte
}

func main() {
	out := flag.String("out", "", "directory to write the fixtures into")
	flag.Parse()
	if *out == "" {
		fail(fmt.Errorf("-out is required"))
	}

	var mu sync.Mutex
	var seen []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		seen = append(seen, recorded{Method: r.Method, ContentType: r.Header.Get("Content-Type"), body: body})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"repo-creds","namespace":"argocd"}}`))
	}))
	defer srv.Close()

	ctx := context.Background()
	protobufClient := kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL})
	jsonClient := kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{ContentType: "application/json"}})

	if _, err := protobufClient.CoreV1().Secrets("argocd").Create(ctx, secret(), metav1.CreateOptions{}); err != nil {
		fail(err)
	}
	if _, err := jsonClient.CoreV1().Secrets("argocd").Create(ctx, secret(), metav1.CreateOptions{}); err != nil {
		fail(err)
	}
	apply := applycorev1.Secret("repo-creds", "argocd").
		WithLabels(map[string]string{"akuity.io/secret-sync": "true"}).
		WithAnnotations(map[string]string{"note": "applied"}).
		WithType(corev1.SecretTypeOpaque).
		WithStringData(map[string]string{"url": "https://example.invalid/repo.git"}).
		WithData(map[string][]byte{"password": []byte("not-a-real-password")})
	if _, err := protobufClient.CoreV1().Secrets("argocd").Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "fixture", Force: true}); err != nil {
		fail(err)
	}

	if len(seen) != 3 {
		fail(fmt.Errorf("expected 3 requests, saw %d", len(seen)))
	}
	names := []string{"create.pb", "create.json", "apply.body"}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for i := range seen {
		seen[i].File = names[i]
		if err := os.WriteFile(filepath.Join(*out, names[i]), seen[i].body, 0o644); err != nil {
			fail(err)
		}
	}
	var index bytes.Buffer
	enc := json.NewEncoder(&index)
	enc.SetIndent("", "  ")
	if err := enc.Encode(seen); err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "index.json"), index.Bytes(), 0o644); err != nil {
		fail(err)
	}
}

// secret fills every field of a Secret and its ObjectMeta that a create or an
// update can carry.
func secret() *corev1.Secret {
	yes, no := true, false
	grace := int64(30)
	created := metav1.NewTime(time.Unix(1_700_000_000, 0))
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:                       "repo-creds",
			GenerateName:               "repo-",
			Namespace:                  "argocd",
			UID:                        types.UID("0b8c9a52-5f3e-4c1d-9a0e-1d2c3b4a5f60"),
			ResourceVersion:            "12345",
			Generation:                 7,
			CreationTimestamp:          created,
			DeletionGracePeriodSeconds: &grace,
			Labels: map[string]string{
				"akuity.io/secret-sync":          "true",
				"argocd.argoproj.io/secret-type": "repo-creds",
			},
			Annotations: map[string]string{
				"akuity.io/managed-secret-allowed-clusters": "cluster1,cluster2",
				"note": "héllo, \"world\"",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         "argoproj.io/v1alpha1",
				Kind:               "Application",
				Name:               "guestbook",
				UID:                types.UID("5d1f0c2e-8a4b-4e6f-9c3d-2b1a0f9e8d7c"),
				Controller:         &yes,
				BlockOwnerDeletion: &no,
			}},
			Finalizers: []string{"example.com/keep"},
			ManagedFields: []metav1.ManagedFieldsEntry{{
				Manager:    "kubectl-client-side-apply",
				Operation:  metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1",
				Time:       &created,
				FieldsType: "FieldsV1",
				FieldsV1:   &metav1.FieldsV1{Raw: []byte(`{"f:data":{".":{},"f:password":{}},"f:type":{}}`)},
			}},
		},
		Immutable: &yes,
		Type:      corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			"password": []byte("not-a-real-password"),
			"binary":   {0x00, 0xff, 0xfe, 0x80, 0x7f},
			"empty":    {},
		},
		StringData: map[string]string{"url": "https://example.invalid/repo.git"},
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "client-go-bodies:", err)
	os.Exit(1)
}
