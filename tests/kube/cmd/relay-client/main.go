// Command relay-client judges secret-relay's relay with client-go, the way
// controllers written in Go talk to kube-apiserver: the default typed clientset
// (which in client-go v0.37 sends Secrets as protobuf), server-side apply with
// apply configurations, merge, JSON and strategic merge patches, shared informers
// (which in client-go v0.37 sync through a streaming list, WatchList, by
// default) and raw watches with sendInitialEvents. Every check holds
// kube-apiserver's behaviour for Secrets as the bar; pointed straight at a
// kube-apiserver, every check passes.
//
// It prints one line per check, "PASS name: detail" or "FAIL name: detail", and
// exits 1 when any check fails (2 on bad usage). Every wait has a timeout, and
// the whole run a deadline: a relay that never answers fails checks, it does not
// hang the run.
//
//	relay-client -kubeconfig cluster1-via-relay.kubeconfig \
//	    -hub-kubeconfig hub-admin.kubeconfig -namespace argocd \
//	    -targeted relay-client-targeted -steady relay-client-steady
//
// -kubeconfig is the identity under test (a cluster's certificate against the
// relay). -hub-kubeconfig acts as the control plane on its own API server: it
// changes and deletes the -targeted Secret and changes the -steady one, two
// Secrets the control plane targets at this cluster and that exist before the
// run. The run writes its own Secrets named -prefix-... with -labels (which the
// policy must admit) and deletes them again.
//
// From the repository root:
//
//	(cd tests/kube && go build -o /tmp/relay-client ./cmd/relay-client)
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// fieldManager names this program's writes; otherManager is a second applier
// that must meet a conflict.
const (
	fieldManager = "relay-client"
	otherManager = "relay-client-other"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "the identity under test: a kubeconfig reaching the relay (or an API server)")
	hubKubeconfig := flag.String("hub-kubeconfig", "", "the control plane's admin kubeconfig, on its own API server: changes and deletes the targeted Secrets")
	namespace := flag.String("namespace", "", "the namespace of the Secrets (default: the kubeconfig context's, else argocd)")
	targeted := flag.String("targeted", "", "a Secret the control plane targets at this cluster: informers see it, its change and its deletion (this run deletes it)")
	steady := flag.String("steady", "", "a second targeted Secret: watches resume around it (this run changes it)")
	prefix := flag.String("prefix", "relay-client", "name prefix of the Secrets this run writes")
	labels := flag.String("labels", "akuity.io/secret-sync=true,argocd.argoproj.io/secret-type=repository", "labels of the Secrets this run writes (the policy must admit them)")
	timeout := flag.Duration("timeout", 30*time.Second, "the longest any one check waits")
	deadline := flag.Duration("deadline", 5*time.Minute, "the longest the whole run takes")
	flag.Parse()
	if *kubeconfig == "" || *hubKubeconfig == "" || *targeted == "" || *steady == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: relay-client -kubeconfig FILE -hub-kubeconfig FILE -targeted NAME -steady NAME [-namespace NS] [-prefix P] [-labels k=v,...]")
		os.Exit(2)
	}
	ownLabels, err := parseLabels(*labels)
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay-client: -labels: %v\n", err)
		os.Exit(2)
	}

	s := &suite{
		requests: &requestLog{},
		timeout:  *timeout,
		prefix:   *prefix,
		labels:   ownLabels,
		targeted: *targeted,
		steady:   *steady,
	}
	s.watchdog(*deadline)
	if err := s.connect(*kubeconfig, *hubKubeconfig, *namespace); err != nil {
		fmt.Fprintf(os.Stderr, "relay-client: %v\n", err)
		os.Exit(2)
	}
	s.info()
	s.run()
	s.cleanup()
	if s.failed() > 0 {
		fmt.Printf("%d of %d checks failed\n", s.failed(), s.total())
		os.Exit(1)
	}
	fmt.Printf("all %d checks passed\n", s.total())
}

// suite holds the clients and what the checks hand on to each other.
type suite struct {
	requests *requestLog
	timeout  time.Duration
	prefix   string
	labels   map[string]string
	targeted string
	steady   string

	namespace string
	// pb is the default typed clientset (protobuf bodies); js the same identity
	// with JSON bodies (to set up what a failed protobuf write could not); hub
	// the control plane, with JSON bodies.
	pb  kubernetes.Interface
	js  kubernetes.Interface
	hub kubernetes.Interface

	mu       sync.Mutex
	current  string
	passed   int
	failures int

	// typed is the typed check's Secret as last written (nil: none).
	typed *corev1.Secret
	// steadyData counts the control plane's changes to the steady Secret.
	steadyData int
}

// connect builds the clients. pb is kubernetes.NewForConfig as is: in client-go
// v0.37 its typed Secrets client prefers protobuf (gentype.PrefersProtobuf, then
// Request.UseProtobufAsDefault: with no ContentType configured, bodies go as
// application/vnd.kubernetes.protobuf and Accept is
// "application/vnd.kubernetes.protobuf,application/json"). js and hub set JSON
// explicitly.
func (s *suite) connect(kubeconfig, hubKubeconfig, namespace string) error {
	loaded := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{})
	cfg, err := loaded.ClientConfig()
	if err != nil {
		return fmt.Errorf("failed to load %s: %w", kubeconfig, err)
	}
	if namespace == "" {
		ns, explicit, err := loaded.Namespace()
		if err != nil || !explicit {
			ns = "argocd"
		}
		namespace = ns
	}
	s.namespace = namespace
	cfg.QPS, cfg.Burst = 50, 100
	cfg.Wrap(s.requests.wrap)
	cfg.UserAgent = "relay-client/" + clientGoVersion()
	js := rest.CopyConfig(cfg)
	js.ContentType = runtime.ContentTypeJSON
	if s.pb, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if s.js, err = kubernetes.NewForConfig(js); err != nil {
		return err
	}
	hub, err := clientcmd.BuildConfigFromFlags("", hubKubeconfig)
	if err != nil {
		return fmt.Errorf("failed to load %s: %w", hubKubeconfig, err)
	}
	hub.ContentType = runtime.ContentTypeJSON
	if s.hub, err = kubernetes.NewForConfig(hub); err != nil {
		return err
	}
	return nil
}

func (s *suite) info() {
	fmt.Printf("INFO client-go %s; WatchListClient=%v (informers sync through a streaming list); the default typed clientset sends protobuf; namespace %s\n",
		clientGoVersion(),
		clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient),
		s.namespace)
}

// run runs every check in order; later checks use what earlier ones left.
func (s *suite) run() {
	s.typedChecks()
	s.applyChecks()
	s.patchChecks()
	s.streamingChecks()
	s.informerChecks()
	s.resumeCheck()
}

// ---- running checks ---------------------------------------------------------

// check runs one check under the per-check timeout and prints its line. fn
// returns the detail of a pass, or an error whose text is the failure.
func (s *suite) check(name string, fn func(ctx context.Context) (string, error)) bool {
	s.mu.Lock()
	s.current = name
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	detail, err := func() (detail string, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panicked: %v", r)
			}
		}()
		return fn(ctx)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil && !strings.Contains(err.Error(), "timed out") {
			err = fmt.Errorf("timed out after %s: %w", s.timeout, err)
		}
		s.failures++
		fmt.Printf("FAIL %s: %v\n", name, err)
		return false
	}
	s.passed++
	fmt.Printf("PASS %s: %s\n", name, detail)
	return true
}

// skip fails a check that cannot run because an earlier step failed.
func (s *suite) skip(name, why string) {
	s.check(name, func(context.Context) (string, error) {
		return "", fmt.Errorf("not run: %s", why)
	})
}

func (s *suite) failed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures
}

func (s *suite) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures + s.passed
}

// watchdog ends the run with a failure when it outlasts the deadline.
func (s *suite) watchdog(deadline time.Duration) {
	time.AfterFunc(deadline, func() {
		s.mu.Lock()
		current := s.current
		s.mu.Unlock()
		fmt.Printf("FAIL deadline: the run did not finish within %s (in check %q)\n", deadline, current)
		os.Exit(1)
	})
}

// ---- typed clientset, protobuf bodies ----------------------------------------

func (s *suite) typedChecks() {
	name := s.prefix + "-typed"
	secrets := s.pb.CoreV1().Secrets(s.namespace)
	s.check("protobuf create", func(ctx context.Context) (string, error) {
		mark := s.requests.mark()
		got, err := secrets.Create(ctx, s.own(name, map[string]string{"password": "typed-1"}), metav1.CreateOptions{FieldManager: fieldManager})
		sent := s.requests.since(mark).last(http.MethodPost)
		if err != nil {
			// Go on with a JSON create, so that the checks after this one still run.
			if got, jerr := s.js.CoreV1().Secrets(s.namespace).Create(ctx, s.own(name, map[string]string{"password": "typed-1"}), metav1.CreateOptions{}); jerr == nil {
				s.typed = got
			}
			return "", fmt.Errorf("%s (request Content-Type %s)", describe(err), sent.requestType)
		}
		s.typed = got
		if err := expectData(got, "password", "typed-1"); err != nil {
			return "", err
		}
		if got.ResourceVersion == "" {
			return "", errors.New("the created Secret has no resourceVersion")
		}
		if !strings.HasPrefix(sent.requestType, runtime.ContentTypeProtobuf) {
			return "", fmt.Errorf("client-go sent Content-Type %q, not protobuf: the check itself is wrong", sent.requestType)
		}
		return fmt.Sprintf("sent %s, answered %d %s", sent.requestType, sent.status, sent.responseType), nil
	})

	if s.typed == nil {
		s.skip("protobuf update", "no Secret was created")
	} else {
		s.check("protobuf update", func(ctx context.Context) (string, error) {
			obj := s.typed.DeepCopy()
			obj.Data["password"] = []byte("typed-2")
			obj.Labels["relay-client/step"] = "updated"
			mark := s.requests.mark()
			got, err := secrets.Update(ctx, obj, metav1.UpdateOptions{FieldManager: fieldManager})
			sent := s.requests.since(mark).last(http.MethodPut)
			if err != nil {
				if got, jerr := s.js.CoreV1().Secrets(s.namespace).Update(ctx, obj, metav1.UpdateOptions{}); jerr == nil {
					s.typed = got
				}
				return "", fmt.Errorf("%s (request Content-Type %s)", describe(err), sent.requestType)
			}
			s.typed = got
			if err := expectData(got, "password", "typed-2"); err != nil {
				return "", err
			}
			if got.Labels["relay-client/step"] != "updated" {
				return "", fmt.Errorf("the answer lacks the new label: %v", got.Labels)
			}
			if got.ResourceVersion == obj.ResourceVersion {
				return "", fmt.Errorf("the resourceVersion stayed %s", got.ResourceVersion)
			}
			return fmt.Sprintf("sent %s, resourceVersion %s -> %s", sent.requestType, obj.ResourceVersion, got.ResourceVersion), nil
		})
	}

	if s.typed == nil {
		s.skip("get reads the last write", "no Secret was created")
		s.skip("delete", "no Secret was created")
		s.skip("get after delete is 404", "no Secret was created")
		return
	}
	s.check("get reads the last write", func(ctx context.Context) (string, error) {
		mark := s.requests.mark()
		got, err := secrets.Get(ctx, name, metav1.GetOptions{})
		answered := s.requests.since(mark).last(http.MethodGet).responseType
		if err != nil {
			return "", errors.New(describe(err))
		}
		if got.ResourceVersion != s.typed.ResourceVersion {
			return "", fmt.Errorf("resourceVersion %s, but the last write answered %s (kube-apiserver reads are consistent with acknowledged writes)", got.ResourceVersion, s.typed.ResourceVersion)
		}
		if err := expectData(got, "password", string(s.typed.Data["password"])); err != nil {
			return "", err
		}
		return fmt.Sprintf("resourceVersion %s, answered %s", got.ResourceVersion, answered), nil
	})
	deleted := s.check("delete", func(ctx context.Context) (string, error) {
		mark := s.requests.mark()
		err := secrets.Delete(ctx, name, metav1.DeleteOptions{})
		sent := s.requests.since(mark).last(http.MethodDelete)
		if err != nil {
			// Go on with a JSON delete, so that the next check still runs.
			if jerr := s.js.CoreV1().Secrets(s.namespace).Delete(ctx, name, metav1.DeleteOptions{}); jerr == nil {
				s.typed = nil
			}
			return "", fmt.Errorf("%s (DeleteOptions sent as %s)", describe(err), sent.requestType)
		}
		s.typed = nil
		return fmt.Sprintf("DeleteOptions sent as %s, answered %d", sent.requestType, sent.status), nil
	})
	if !deleted && s.typed != nil {
		s.skip("get after delete is 404", "the Secret could not be deleted")
		return
	}
	s.check("get after delete is 404", func(ctx context.Context) (string, error) {
		got, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return "", fmt.Errorf("the deleted Secret is still served (resourceVersion %s)", got.ResourceVersion)
		}
		if !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("expected 404 NotFound, got %s", describe(err))
		}
		return describe(err), nil
	})
}

// ---- server-side apply ------------------------------------------------------------

func (s *suite) applyChecks() {
	name := s.prefix + "-apply"
	secrets := s.pb.CoreV1().Secrets(s.namespace)
	applied := s.check("server-side apply creates", func(ctx context.Context) (string, error) {
		cfg := applycorev1.Secret(name, s.namespace).
			WithLabels(s.labels).
			WithLabels(map[string]string{"relay-client/apply": "v1"}).
			WithData(map[string][]byte{"password": []byte("apply-1"), "extra": []byte("x")})
		got, err := secrets.Apply(ctx, cfg, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
		if err != nil {
			return "", errors.New(describe(err))
		}
		if err := expectData(got, "password", "apply-1"); err != nil {
			return "", err
		}
		if err := expectData(got, "extra", "x"); err != nil {
			return "", err
		}
		if got.Labels["relay-client/apply"] != "v1" {
			return "", fmt.Errorf("the answer lacks the applied label: %v", got.Labels)
		}
		if !slices.ContainsFunc(got.ManagedFields, func(m metav1.ManagedFieldsEntry) bool {
			return m.Manager == fieldManager && m.Operation == metav1.ManagedFieldsOperationApply
		}) {
			return "", fmt.Errorf("no managedFields entry for %s with operation Apply: %s", fieldManager, managers(got))
		}
		return "managedFields " + managers(got), nil
	})
	if !applied {
		s.skip("server-side apply changes and drops a field", "the first apply failed")
		s.skip("server-side apply conflict without force is 409", "the first apply failed")
		return
	}
	s.check("server-side apply changes and drops a field", func(ctx context.Context) (string, error) {
		cfg := applycorev1.Secret(name, s.namespace).
			WithLabels(s.labels).
			WithLabels(map[string]string{"relay-client/apply": "v2"}).
			WithData(map[string][]byte{"password": []byte("apply-2")})
		got, err := secrets.Apply(ctx, cfg, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
		if err != nil {
			return "", errors.New(describe(err))
		}
		if err := expectData(got, "password", "apply-2"); err != nil {
			return "", err
		}
		if _, ok := got.Data["extra"]; ok {
			return "", errors.New("data.extra is still there: a field only this manager applied and no longer applies is removed")
		}
		if got.Labels["relay-client/apply"] != "v2" {
			return "", fmt.Errorf("the label was not changed: %v", got.Labels)
		}
		return "data.password changed, data.extra removed, resourceVersion " + got.ResourceVersion, nil
	})
	s.check("server-side apply conflict without force is 409", func(ctx context.Context) (string, error) {
		cfg := applycorev1.Secret(name, s.namespace).
			WithLabels(map[string]string{"relay-client/apply": "other"})
		got, err := secrets.Apply(ctx, cfg, metav1.ApplyOptions{FieldManager: otherManager})
		if err == nil {
			return "", fmt.Errorf("the apply succeeded (label now %q): a field another manager owns is a conflict without force", got.Labels["relay-client/apply"])
		}
		if !apierrors.IsConflict(err) {
			return "", fmt.Errorf("expected 409 Conflict, got %s", describe(err))
		}
		return describe(err), nil
	})
}

// ---- patches ----------------------------------------------------------------------

func (s *suite) patchChecks() {
	name := s.prefix + "-patch"
	secrets := s.pb.CoreV1().Secrets(s.namespace)
	var created bool
	s.mu.Lock()
	s.current = "setting up " + name
	s.mu.Unlock()
	func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		_, err := s.js.CoreV1().Secrets(s.namespace).Create(ctx, s.own(name, map[string]string{"password": "patch-0"}), metav1.CreateOptions{})
		created = err == nil
		if err != nil {
			fmt.Printf("INFO could not create %s with JSON for the patch checks: %s\n", name, describe(err))
		}
	}()
	if !created {
		for _, c := range []string{"merge patch", "JSON patch", "strategic merge patch"} {
			s.skip(c, "the Secret to patch could not be created")
		}
		return
	}
	b64 := base64.StdEncoding.EncodeToString
	s.check("merge patch", func(ctx context.Context) (string, error) {
		body := fmt.Sprintf(`{"metadata":{"labels":{"relay-client/patched":"merge"}},"data":{"password":%q}}`, b64([]byte("patch-merge")))
		got, err := secrets.Patch(ctx, name, types.MergePatchType, []byte(body), metav1.PatchOptions{FieldManager: fieldManager})
		if err != nil {
			return "", errors.New(describe(err))
		}
		if err := expectData(got, "password", "patch-merge"); err != nil {
			return "", err
		}
		if got.Labels["relay-client/patched"] != "merge" {
			return "", fmt.Errorf("the label was not set: %v", got.Labels)
		}
		return "resourceVersion " + got.ResourceVersion, nil
	})
	s.check("JSON patch", func(ctx context.Context) (string, error) {
		body := fmt.Sprintf(`[
			{"op":"test","path":"/metadata/labels/relay-client~1patched","value":"merge"},
			{"op":"replace","path":"/data/password","value":%q},
			{"op":"add","path":"/metadata/labels/relay-client~1json","value":"yes"}
		]`, b64([]byte("patch-json")))
		got, err := secrets.Patch(ctx, name, types.JSONPatchType, []byte(body), metav1.PatchOptions{FieldManager: fieldManager})
		if err != nil {
			return "", errors.New(describe(err))
		}
		if err := expectData(got, "password", "patch-json"); err != nil {
			return "", err
		}
		if got.Labels["relay-client/json"] != "yes" {
			return "", fmt.Errorf("the label was not added: %v", got.Labels)
		}
		return "resourceVersion " + got.ResourceVersion, nil
	})
	s.check("strategic merge patch", func(ctx context.Context) (string, error) {
		body := `{"metadata":{"annotations":{"relay-client/strategic":"yes"}}}`
		got, err := secrets.Patch(ctx, name, types.StrategicMergePatchType, []byte(body), metav1.PatchOptions{FieldManager: fieldManager})
		if err != nil {
			return "", errors.New(describe(err))
		}
		if got.Annotations["relay-client/strategic"] != "yes" {
			return "", fmt.Errorf("the annotation was not set: %v", got.Annotations)
		}
		if err := expectData(got, "password", "patch-json"); err != nil {
			return "", err
		}
		return "resourceVersion " + got.ResourceVersion, nil
	})
}

// ---- raw streaming lists and watches ----------------------------------------------------

func (s *suite) streamingChecks() {
	secrets := s.pb.CoreV1().Secrets(s.namespace)
	s.check("streaming list from the most recent state", func(ctx context.Context) (string, error) {
		list, err := secrets.List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", fmt.Errorf("list: %s", describe(err))
		}
		return s.streamingList(ctx, "", names(list.Items))
	})
	s.check("streaming list from a list's resourceVersion", func(ctx context.Context) (string, error) {
		list, err := secrets.List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", fmt.Errorf("list: %s", describe(err))
		}
		if list.ResourceVersion == "" {
			return "", errors.New("the list has no resourceVersion")
		}
		return s.streamingList(ctx, list.ResourceVersion, names(list.Items))
	})
	s.check("watch resumed from a list's resourceVersion", func(ctx context.Context) (string, error) {
		list, err := secrets.List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", fmt.Errorf("list: %s", describe(err))
		}
		if !slices.Contains(names(list.Items), s.steady) {
			return "", fmt.Errorf("the list lacks the targeted Secret %s: %v", s.steady, names(list.Items))
		}
		w, err := secrets.Watch(ctx, metav1.ListOptions{
			ResourceVersion:     list.ResourceVersion,
			AllowWatchBookmarks: true,
			TimeoutSeconds:      seconds(s.timeout),
		})
		if err != nil {
			return "", fmt.Errorf("watch from %s: %s", list.ResourceVersion, describe(err))
		}
		defer w.Stop()
		value, err := s.changeSteady(ctx)
		if err != nil {
			return "", err
		}
		var seen []string
		for {
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("timed out waiting for MODIFIED %s after %s; saw %v", s.steady, list.ResourceVersion, seen)
			case ev, ok := <-w.ResultChan():
				if !ok {
					return "", fmt.Errorf("the watch from %s ended before MODIFIED %s; saw %v", list.ResourceVersion, s.steady, seen)
				}
				if ev.Type == watch.Error {
					return "", fmt.Errorf("ERROR event: %s", describe(apierrors.FromObject(ev.Object)))
				}
				if ev.Type == watch.Bookmark {
					continue
				}
				sec, _ := ev.Object.(*corev1.Secret)
				if sec == nil {
					return "", fmt.Errorf("%s event with a %T", ev.Type, ev.Object)
				}
				seen = append(seen, fmt.Sprintf("%s %s", ev.Type, sec.Name))
				if ev.Type != watch.Modified || sec.Name != s.steady {
					return "", fmt.Errorf("the first event after resourceVersion %s is %s %s, expected MODIFIED %s (a watch from a list's resourceVersion starts after it)", list.ResourceVersion, ev.Type, sec.Name, s.steady)
				}
				if err := expectData(sec, "password", value); err != nil {
					return "", err
				}
				return fmt.Sprintf("from resourceVersion %s: MODIFIED %s at %s", list.ResourceVersion, sec.Name, sec.ResourceVersion), nil
			}
		}
	})
}

// streamingList opens a watch with sendInitialEvents from rv and expects an ADDED
// event for each of want, then the bookmark annotated k8s.io/initial-events-end.
func (s *suite) streamingList(ctx context.Context, rv string, want []string) (string, error) {
	w, err := s.pb.CoreV1().Secrets(s.namespace).Watch(ctx, metav1.ListOptions{
		ResourceVersion:      rv,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		SendInitialEvents:    new(true),
		AllowWatchBookmarks:  true,
		TimeoutSeconds:       seconds(s.timeout),
	})
	if err != nil {
		return "", fmt.Errorf("watch?sendInitialEvents=true&resourceVersion=%q: %s", rv, describe(err))
	}
	defer w.Stop()
	var added, other []string
	// seen says what came before the failure, for its message.
	seen := func() string {
		text := fmt.Sprintf("%d ADDED events %v", len(added), added)
		if len(other) > 0 {
			text += fmt.Sprintf(" and %v", other)
		}
		return text
	}
	for {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("timed out after %s, waiting for the %s bookmark; expected ADDED for %v", seen(), metav1.InitialEventsAnnotationKey, want)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return "", fmt.Errorf("the watch ended after %s without the %s bookmark; expected ADDED for %v", seen(), metav1.InitialEventsAnnotationKey, want)
			}
			switch ev.Type {
			case watch.Added:
				m, err := meta.Accessor(ev.Object)
				if err != nil {
					return "", fmt.Errorf("ADDED event with a %T", ev.Object)
				}
				added = append(added, m.GetName())
			case watch.Bookmark:
				m, err := meta.Accessor(ev.Object)
				if err != nil {
					return "", fmt.Errorf("BOOKMARK event with a %T", ev.Object)
				}
				if m.GetAnnotations()[metav1.InitialEventsAnnotationKey] != "true" {
					other = append(other, "BOOKMARK at "+m.GetResourceVersion()+" without the annotation")
					continue
				}
				sort.Strings(added)
				if missing, extra := diff(want, added); len(missing) > 0 || len(extra) > 0 {
					return "", fmt.Errorf("the %s bookmark (resourceVersion %s) came after %s; expected ADDED for %v (missing %v, unexpected %v)", metav1.InitialEventsAnnotationKey, m.GetResourceVersion(), seen(), want, missing, extra)
				}
				if m.GetResourceVersion() == "" {
					return "", fmt.Errorf("the %s bookmark has no resourceVersion", metav1.InitialEventsAnnotationKey)
				}
				return fmt.Sprintf("ADDED %v, then the %s bookmark at %s", added, metav1.InitialEventsAnnotationKey, m.GetResourceVersion()), nil
			case watch.Error:
				return "", fmt.Errorf("ERROR event after %s: %s", seen(), describe(apierrors.FromObject(ev.Object)))
			default:
				return "", fmt.Errorf("%s event before the %s bookmark, after %s", ev.Type, metav1.InitialEventsAnnotationKey, seen())
			}
		}
	}
}

// changeSteady changes the steady Secret's data as the control plane and returns
// the new value.
func (s *suite) changeSteady(ctx context.Context) (string, error) {
	s.steadyData++
	value := fmt.Sprintf("steady-%d", s.steadyData)
	if err := hubSetPassword(ctx, s.hub, s.namespace, s.steady, value); err != nil {
		return "", err
	}
	return value, nil
}

func hubSetPassword(ctx context.Context, hub kubernetes.Interface, namespace, name, value string) error {
	body := fmt.Sprintf(`{"data":{"password":%q}}`, base64.StdEncoding.EncodeToString([]byte(value)))
	if _, err := hub.CoreV1().Secrets(namespace).Patch(ctx, name, types.MergePatchType, []byte(body), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("the control plane could not change %s: %s", name, describe(err))
	}
	return nil
}

// ---- informers ---------------------------------------------------------------------

// informer is one SharedInformerFactory's Secret informer and what its handler saw.
type informer struct {
	factory informers.SharedInformerFactory
	lister  cache.SharedIndexInformer
	events  *eventLog
	cancel  context.CancelFunc
}

func (s *suite) startInformer(options ...informers.SharedInformerOption) *informer {
	options = append([]informers.SharedInformerOption{informers.WithNamespace(s.namespace)}, options...)
	factory := informers.NewSharedInformerFactoryWithOptions(s.pb, 0, options...)
	inf := factory.Core().V1().Secrets().Informer()
	events := &eventLog{notify: make(chan struct{})}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if sec, ok := obj.(*corev1.Secret); ok {
				events.add(event{kind: "add", secret: sec})
			}
		},
		UpdateFunc: func(_, obj any) {
			if sec, ok := obj.(*corev1.Secret); ok {
				events.add(event{kind: "update", secret: sec})
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if sec, ok := obj.(*corev1.Secret); ok {
				events.add(event{kind: "delete", secret: sec})
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	factory.StartWithContext(ctx)
	return &informer{factory: factory, lister: inf, events: events, cancel: cancel}
}

func (i *informer) stop() {
	i.cancel()
	i.factory.Shutdown()
}

func (i *informer) get(name string) *corev1.Secret {
	for _, obj := range i.lister.GetStore().List() {
		if sec, ok := obj.(*corev1.Secret); ok && sec.Name == name {
			return sec
		}
	}
	return nil
}

func (s *suite) informerChecks() {
	mark := s.requests.mark()
	inf := s.startInformer()
	defer inf.stop()
	synced := s.check("informer syncs", func(ctx context.Context) (string, error) {
		res := inf.factory.WaitForCacheSyncWithContext(ctx)
		if err := res.AsError(); err != nil {
			return "", fmt.Errorf("WaitForCacheSync: %v; requests: %s", err, s.requests.since(mark).summary())
		}
		got := inf.get(s.targeted)
		if got == nil {
			return "", fmt.Errorf("synced %d Secrets without the targeted %s", len(inf.lister.GetStore().List()), s.targeted)
		}
		return fmt.Sprintf("%d Secrets, %s among them", len(inf.lister.GetStore().List()), s.targeted), nil
	})
	s.check("informer syncs through a streaming list", func(context.Context) (string, error) {
		reqs := s.requests.since(mark)
		var lists, streams []string
		for _, r := range reqs {
			switch {
			case r.method == http.MethodGet && !r.watch() && r.collection():
				lists = append(lists, fmt.Sprintf("LIST ?%s -> %d", r.query, r.status))
			case r.watch() && r.query.Get("sendInitialEvents") == "true":
				streams = append(streams, fmt.Sprintf("WATCH ?%s -> %d", r.query.Encode(), r.status))
			}
		}
		if !clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
			return "", errors.New("WatchListClient is off in this client-go: the check itself is wrong")
		}
		if len(streams) == 0 {
			return "", fmt.Errorf("no watch with sendInitialEvents=true; requests: %s", reqs.summary())
		}
		if len(lists) > 0 {
			return "", fmt.Errorf("the informer fell back to a LIST after its streaming list: %s; then %s", strings.Join(streams, "; "), strings.Join(lists, "; "))
		}
		return strings.Join(streams, "; "), nil
	})
	if !synced {
		s.skip("informer sees a change", "the informer did not sync")
		s.skip("informer sees a deletion", "the informer did not sync")
		return
	}
	s.check("informer sees a change", func(ctx context.Context) (string, error) {
		from := inf.events.len()
		if err := hubSetPassword(ctx, s.hub, s.namespace, s.targeted, "targeted-changed"); err != nil {
			return "", err
		}
		ev, err := inf.events.wait(ctx, from, func(e event) bool {
			return e.kind == "update" && e.secret.Name == s.targeted && string(e.secret.Data["password"]) == "targeted-changed"
		})
		if err != nil {
			return "", fmt.Errorf("no update of %s with the new data: %v; events: %s", s.targeted, err, inf.events.summary(from))
		}
		return "update at resourceVersion " + ev.secret.ResourceVersion, nil
	})
	s.check("informer sees a deletion", func(ctx context.Context) (string, error) {
		from := inf.events.len()
		if err := s.hub.CoreV1().Secrets(s.namespace).Delete(ctx, s.targeted, metav1.DeleteOptions{}); err != nil {
			return "", fmt.Errorf("the control plane could not delete %s: %s", s.targeted, describe(err))
		}
		ev, err := inf.events.wait(ctx, from, func(e event) bool {
			return e.kind == "delete" && e.secret.Name == s.targeted
		})
		if err != nil {
			return "", fmt.Errorf("no delete of %s: %v; events: %s", s.targeted, err, inf.events.summary(from))
		}
		if inf.get(s.targeted) != nil {
			return "", fmt.Errorf("the informer still holds %s after its delete", s.targeted)
		}
		return fmt.Sprintf("delete with the last state (resourceVersion %s, password %q)", ev.secret.ResourceVersion, ev.secret.Data["password"]), nil
	})
}

// resumeCheck runs an informer whose watches the server ends after two seconds
// (timeoutSeconds), so the reflector resumes them from its last resourceVersion
// again and again; the informer must keep its state (no delete of what still
// exists) and see a change made after the resumes.
func (s *suite) resumeCheck() {
	const restarts = 2
	mark := s.requests.mark()
	inf := s.startInformer(informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.TimeoutSeconds = new(int64(2))
	}))
	defer inf.stop()
	s.check("informer converges across watch restarts", func(ctx context.Context) (string, error) {
		if err := inf.factory.WaitForCacheSyncWithContext(ctx).AsError(); err != nil {
			return "", fmt.Errorf("WaitForCacheSync: %v; requests: %s", err, s.requests.since(mark).summary())
		}
		if inf.get(s.steady) == nil {
			return "", fmt.Errorf("synced without the targeted %s", s.steady)
		}
		synced := s.requests.mark()
		// Wait for the resumed watches: each is a watch from a resourceVersion
		// that ended after its timeoutSeconds.
		var resumed requests
		for {
			resumed = s.requests.since(synced).filter(func(r request) bool {
				return r.watch() && r.query.Get("resourceVersion") != "" && r.query.Get("sendInitialEvents") != "true"
			})
			if len(resumed) >= restarts {
				break
			}
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("the informer's watch was not resumed %d times; requests since it synced: %s", restarts, s.requests.since(synced).summary())
			case <-time.After(100 * time.Millisecond):
			}
		}
		if ev, ok := inf.events.find(func(e event) bool { return e.kind == "delete" && e.secret.Name == s.steady }); ok {
			return "", fmt.Errorf("the informer dropped %s (a delete at resourceVersion %s) across its restarts: %s", s.steady, ev.secret.ResourceVersion, s.requests.since(synced).summary())
		}
		from := inf.events.len()
		value, err := s.changeSteady(ctx)
		if err != nil {
			return "", err
		}
		if _, err := inf.events.wait(ctx, from, func(e event) bool {
			return e.kind == "update" && e.secret.Name == s.steady && string(e.secret.Data["password"]) == value
		}); err != nil {
			return "", fmt.Errorf("no update of %s after the restarts: %v; events: %s; requests since sync: %s", s.steady, err, inf.events.summary(from), s.requests.since(synced).summary())
		}
		if ev, ok := inf.events.find(func(e event) bool { return e.kind == "delete" && e.secret.Name == s.steady }); ok {
			return "", fmt.Errorf("the informer dropped %s at resourceVersion %s", s.steady, ev.secret.ResourceVersion)
		}
		got := inf.get(s.steady)
		if got == nil || string(got.Data["password"]) != value {
			return "", fmt.Errorf("the informer's copy of %s is not the last change", s.steady)
		}
		var rvs []string
		for _, r := range resumed {
			rvs = append(rvs, r.query.Get("resourceVersion"))
		}
		relists := len(s.requests.since(synced).filter(func(r request) bool {
			return (r.watch() && r.query.Get("sendInitialEvents") == "true") || (!r.watch() && r.collection())
		}))
		return fmt.Sprintf("watches resumed from resourceVersions %v, %d relists, saw the change at %s", rvs, relists, got.ResourceVersion), nil
	})
}

// ---- cleanup ------------------------------------------------------------------------

func (s *suite) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	for _, name := range []string{s.prefix + "-typed", s.prefix + "-apply", s.prefix + "-patch"} {
		err := s.js.CoreV1().Secrets(s.namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			fmt.Printf("INFO could not delete %s: %s\n", name, describe(err))
		}
	}
}

// ---- helpers ------------------------------------------------------------------------

// own is a Secret this run writes: its labels and data.
func (s *suite) own(name string, data map[string]string) *corev1.Secret {
	labels := map[string]string{}
	for k, v := range s.labels {
		labels[k] = v
	}
	bytes := map[string][]byte{}
	for k, v := range data {
		bytes[k] = []byte(v)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, Labels: labels},
		Data:       bytes,
	}
}

func expectData(sec *corev1.Secret, key, want string) error {
	got, ok := sec.Data[key]
	if !ok {
		return fmt.Errorf("%s has no data.%s", sec.Name, key)
	}
	if string(got) != want {
		return fmt.Errorf("%s data.%s is %q, expected %q", sec.Name, key, got, want)
	}
	return nil
}

func managers(sec *corev1.Secret) string {
	var out []string
	for _, m := range sec.ManagedFields {
		out = append(out, fmt.Sprintf("%s/%s", m.Manager, m.Operation))
	}
	return "[" + strings.Join(out, " ") + "]"
}

// describe renders an error as the API's status when it is one.
func describe(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		st := status.Status()
		return fmt.Sprintf("%d %s: %s", st.Code, st.Reason, st.Message)
	}
	return err.Error()
}

func names(items []corev1.Secret) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.Name)
	}
	sort.Strings(out)
	return out
}

// diff returns what of want is not in got and what of got is not in want.
func diff(want, got []string) (missing, extra []string) {
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

func seconds(d time.Duration) *int64 {
	return new(int64(d / time.Second))
}

func parseLabels(text string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(text, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// clientGoVersion is the k8s.io/client-go module this binary was built with.
func clientGoVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	for _, m := range info.Deps {
		if m.Path == "k8s.io/client-go" {
			if m.Replace != nil {
				m = m.Replace
			}
			return m.Version
		}
	}
	return "(unknown)"
}

// ---- informer events ---------------------------------------------------------------

type event struct {
	kind   string
	secret *corev1.Secret
}

type eventLog struct {
	mu     sync.Mutex
	events []event
	// notify is closed (and replaced) on every event.
	notify chan struct{}
}

func (l *eventLog) add(e event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	close(l.notify)
	l.notify = make(chan struct{})
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

func (l *eventLog) find(pred func(event) bool) (event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if pred(e) {
			return e, true
		}
	}
	return event{}, false
}

// wait returns the first event from index from on that satisfies pred.
func (l *eventLog) wait(ctx context.Context, from int, pred func(event) bool) (event, error) {
	for {
		l.mu.Lock()
		for ; from < len(l.events); from++ {
			if pred(l.events[from]) {
				e := l.events[from]
				l.mu.Unlock()
				return e, nil
			}
		}
		notify := l.notify
		l.mu.Unlock()
		select {
		case <-notify:
		case <-ctx.Done():
			return event{}, errors.New("timed out")
		}
	}
}

func (l *eventLog) summary(from int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events[min(from, len(l.events)):] {
		out = append(out, fmt.Sprintf("%s %s@%s", e.kind, e.secret.Name, e.secret.ResourceVersion))
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// ---- the requests client-go sent --------------------------------------------------------

type request struct {
	method       string
	path         string
	query        url.Values
	requestType  string
	status       int
	responseType string
}

type requests []request

// requestLog records every request of the clients under test, through their
// rest.Config's WrapTransport.
type requestLog struct {
	mu   sync.Mutex
	reqs []*request
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return &recordingTransport{rt: rt, log: l}
}

func (l *requestLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

func (l *requestLog) since(mark int) requests {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(requests, 0, len(l.reqs)-mark)
	for _, r := range l.reqs[mark:] {
		out = append(out, *r)
	}
	return out
}

func (rs requests) last(method string) request {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].method == method {
			return rs[i]
		}
	}
	return request{requestType: "(no " + method + " sent)"}
}

func (rs requests) filter(pred func(request) bool) requests {
	var out requests
	for _, r := range rs {
		if pred(r) {
			out = append(out, r)
		}
	}
	return out
}

func (rs requests) summary() string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s ?%s -> %d", r.verb(), r.query.Encode(), r.status))
	}
	return "[" + strings.Join(out, "; ") + "]"
}

func (r request) watch() bool {
	return r.method == http.MethodGet && r.query.Get("watch") == "true"
}

func (r request) collection() bool {
	return strings.HasSuffix(r.path, "/secrets")
}

func (r request) verb() string {
	switch {
	case r.watch():
		return "WATCH"
	case r.method == http.MethodGet && r.collection():
		return "LIST"
	default:
		return r.method
	}
}

type recordingTransport struct {
	rt  http.RoundTripper
	log *requestLog
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := &request{
		method:      req.Method,
		path:        req.URL.Path,
		query:       req.URL.Query(),
		requestType: req.Header.Get("Content-Type"),
	}
	t.log.mu.Lock()
	t.log.reqs = append(t.log.reqs, rec)
	t.log.mu.Unlock()
	resp, err := t.rt.RoundTrip(req)
	t.log.mu.Lock()
	defer t.log.mu.Unlock()
	if err != nil {
		rec.responseType = "(error: " + err.Error() + ")"
		return resp, err
	}
	rec.status = resp.StatusCode
	rec.responseType = resp.Header.Get("Content-Type")
	return resp, nil
}
