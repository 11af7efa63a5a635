package check

import (
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "deploy/helm/reversald"
	// kubeVersion is the cluster version templates are rendered for (the chart needs 1.25+;
	// a helm built with go install otherwise assumes 1.20).
	kubeVersion = "1.31.0"
)

var valueSets = map[string]string{
	"minimal": chartDir + "/ci/minimal-values.yaml",
	"full":    chartDir + "/ci/full-values.yaml",
}

// TestHelmLint: helm lint --strict passes with the minimal and the full values.
func TestHelmLint(t *testing.T) {
	t.Parallel()
	for name, values := range valueSets {
		out, err := runTool(t, "helm", "lint", "--strict", "--kube-version", kubeVersion, "-f", values, chartDir)
		if err != nil {
			t.Errorf("helm lint (%s values): %v\n%s", name, err, out)
		}
	}
}

// TestChartRefusesMissingValues: without the values that have no default, or with values that
// contradict each other, helm template fails and names every problem at once.
func TestChartRefusesMissingValues(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"nothing given", nil, []string{
			"4 problem(s)", "kafka.brokers is required", "secrets.database.name is required",
			"secrets.qfpayClientKey.name or secrets.qfpayCredentials.name is required", "qfpay.baseURL and qfpay.appCode are required",
		}},
		{"contradictions", []string{"-f", valueSets["minimal"], "--set", "kafka.saslMechanism=PLAIN,env.MIGRATE_ON_START=true,keda.enabled=true,secrets.kafkaTLS.name=tls,shutdownTimeoutSeconds=0"}, []string{
			"5 problem(s)", "kafka.saslMechanism needs secrets.kafkaSASLPassword.name", "env.MIGRATE_ON_START is set by the chart",
			"keda.prometheus.serverAddress is required", "secrets.kafkaTLS is given but kafka.tls is false", "shutdownTimeoutSeconds must be at least 1",
		}},
	} {
		out, err := runTool(t, "helm", append([]string{"template", "r", chartDir, "--kube-version", kubeVersion}, c.args...)...)
		if err == nil {
			t.Errorf("%s: helm template succeeded", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: helm template's error does not say %q:\n%s", c.name, w, out)
			}
		}
	}
}

// rendered is one object of helm template's output, decoded strictly.
type rendered struct {
	kind, name string
	obj        any
}

// render runs helm template with a value set and decodes every object strictly against its
// API type, or validates it against its CRD's schema (crdKinds): an unknown field, a duplicate
// key or a wrong type fails, and so does a kind that has neither here.
func render(t *testing.T, values string, set ...string) []rendered {
	t.Helper()
	args := []string{"template", "r", chartDir, "--namespace", "payments", "--kube-version", kubeVersion, "-f", values}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := runToolOutput(t, "helm", args...)
	if err != nil {
		t.Fatalf("helm template -f %s: %v", values, err)
	}
	var objs []rendered
	for i, doc := range splitYAML(t, out) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		if crd, ok := crdKinds[head.APIVersion+"/"+head.Kind]; ok {
			if err := crd.validator(t).validate(doc); err != nil {
				t.Errorf("%s %s (-f %s) does not pass its CRD's schema: %v", head.Kind, head.Metadata.Name, values, err)
				continue
			}
			v := reflect.New(reflect.TypeOf(crd.typ))
			if err := yaml.Unmarshal(doc, v.Interface()); err != nil {
				t.Fatalf("%s %s: %v", head.Kind, head.Metadata.Name, err)
			}
			objs = append(objs, rendered{kind: head.Kind, name: head.Metadata.Name, obj: v.Elem().Interface()})
			continue
		}
		obj, ok := apiTypes[head.APIVersion+"/"+head.Kind]
		if !ok {
			t.Errorf("document %d: %s %s has no API type to check it against (add one to apiTypes)", i, head.APIVersion, head.Kind)
			continue
		}
		v := reflect.New(reflect.TypeOf(obj)).Interface()
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			t.Errorf("%s %s (-f %s) does not decode strictly: %v", head.Kind, head.Metadata.Name, values, err)
			continue
		}
		objs = append(objs, rendered{kind: head.Kind, name: head.Metadata.Name, obj: reflect.ValueOf(v).Elem().Interface()})
	}
	return objs
}

// apiTypes are the types the chart may render, by apiVersion/kind, decoded strictly.
var apiTypes = map[string]any{
	"apps/v1/Deployment":                      appsv1.Deployment{},
	"batch/v1/Job":                            batchv1.Job{},
	"v1/Service":                              corev1.Service{},
	"policy/v1/PodDisruptionBudget":           policyv1.PodDisruptionBudget{},
	"monitoring.coreos.com/v1/ServiceMonitor": monitoringv1.ServiceMonitor{},
	"monitoring.coreos.com/v1/PrometheusRule": monitoringv1.PrometheusRule{},
}

// crdKinds are the kinds the chart may render that are validated against their CRD's schema
// (crd_test.go), then decoded into a type with the fields the checks read.
var crdKinds = map[string]struct {
	validator func(testing.TB) *crdValidator
	typ       any
}{
	kedaAPIVersion + "/ScaledObject": {kedaScaledObjects, scaledObject{}},
}

// splitYAML cuts a multi-document stream into its non-empty documents.
func splitYAML(t *testing.T, s string) [][]byte {
	t.Helper()
	var docs [][]byte
	for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(s, -1) {
		// A document of comments only (a template that rendered nothing) is no object.
		var v any
		if err := yaml.Unmarshal([]byte(part), &v); err != nil {
			t.Fatalf("helm template printed YAML that does not parse: %v\n%s", err, part)
		}
		if v != nil {
			docs = append(docs, []byte(part))
		}
	}
	return docs
}

func byKind(objs []rendered) map[string]any {
	m := map[string]any{}
	for _, o := range objs {
		m[o.kind] = o.obj
	}
	return m
}

// TestChartRendersValidObjects: both value sets render objects that decode strictly, the
// optional ones only when asked for, and what the chart promises holds in them.
func TestChartRendersValidObjects(t *testing.T) {
	t.Parallel()
	known := daemonVariables(t)
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			objs := byKind(render(t, values))
			want := []string{"Deployment", "Job", "PodDisruptionBudget", "Service"}
			if name == "full" {
				want = append(want, "PrometheusRule", "ScaledObject", "ServiceMonitor")
			}
			slices.Sort(want)
			if got := slices.Sorted(maps.Keys(objs)); !slices.Equal(got, want) {
				t.Fatalf("kinds rendered: %v, want %v", got, want)
			}
			d := objs["Deployment"].(appsv1.Deployment)
			checkDeployment(t, d, known, name == "full")
			checkMigrateJob(t, objs["Job"].(batchv1.Job))
			if name == "full" {
				checkPrometheusRule(t, objs["PrometheusRule"].(monitoringv1.PrometheusRule))
				checkScaledObject(t, objs["ScaledObject"].(scaledObject), d)
				checkServiceMonitor(t, objs["ServiceMonitor"].(monitoringv1.ServiceMonitor), objs["Service"].(corev1.Service))
			}
		})
	}
}

func checkDeployment(t *testing.T, d appsv1.Deployment, known map[string]bool, keda bool) {
	t.Helper()
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("Deployment has %d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("variable %s is set twice", e.Name)
		}
		env[e.Name] = e
		if !known[e.Name] {
			t.Errorf("variable %s is not one the daemon reads (README's configuration table)", e.Name)
		}
	}
	if v := env["MIGRATE_ON_START"].Value; v != "false" {
		t.Errorf("MIGRATE_ON_START = %q in the pods, want false (the migrate Job runs them)", v)
	}
	// terminationGracePeriodSeconds covers SHUTDOWN_TIMEOUT with a margin.
	shutdown, err := strconv.Atoi(strings.TrimSuffix(env["SHUTDOWN_TIMEOUT"].Value, "s"))
	if err != nil {
		t.Fatalf("SHUTDOWN_TIMEOUT %q: %v", env["SHUTDOWN_TIMEOUT"].Value, err)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g < int64(shutdown)+5 {
		t.Errorf("terminationGracePeriodSeconds %v does not cover SHUTDOWN_TIMEOUT %ds plus the HTTP close (5s)", g, shutdown)
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe = %+v, want GET %s on the http port", name, p, path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9090 || env["HTTP_ADDR"].Value != ":9090" {
		t.Errorf("the http port %v and HTTP_ADDR %q disagree", c.Ports, env["HTTP_ADDR"].Value)
	}
	if keda != (d.Spec.Replicas == nil) {
		t.Errorf("replicas = %v with KEDA %v: KEDA owns the count when it is on, the chart when off", d.Spec.Replicas, keda)
	}
	// Secrets come from files: no secret variable is given a value, and every *_FILE names a
	// file under a mounted Secret volume.
	for _, name := range []string{"DATABASE_URL", "QFPAY_CLIENT_KEY", "KAFKA_SASL_PASSWORD"} {
		if _, ok := env[name]; ok {
			t.Errorf("%s is set as a variable; secrets are mounted (%s_FILE)", name, name)
		}
	}
	if _, ok := env["DATABASE_URL_FILE"]; !ok {
		t.Error("DATABASE_URL_FILE is not set")
	}
	secretVolumes := map[string]*corev1.SecretVolumeSource{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secretVolumes[v.Name] = v.Secret
		}
	}
	for name, e := range env {
		if !strings.HasSuffix(name, "_FILE") {
			continue
		}
		if !fileInSecret(e.Value, c.VolumeMounts, secretVolumes) {
			t.Errorf("%s=%s is not a file of a mounted Secret", name, e.Value)
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want a read-only root and no privilege escalation", sc)
	}
	if ps := spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Error("the pod may run as root")
	}
	if r := c.Resources.Requests; r.Memory().IsZero() || r.Cpu().IsZero() {
		t.Errorf("resource requests %v: want memory and cpu", r)
	}
}

// fileInSecret reports whether path is a file that a Secret volume mount provides: the
// volume's item of that name, or any file of a Secret mounted whole.
func fileInSecret(path string, mounts []corev1.VolumeMount, vols map[string]*corev1.SecretVolumeSource) bool {
	for _, m := range mounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		s, ok := vols[m.Name]
		if !ok {
			return false
		}
		if len(s.Items) == 0 {
			return true
		}
		for _, it := range s.Items {
			if it.Path == rel {
				return true
			}
		}
	}
	return false
}

func checkMigrateJob(t *testing.T, j batchv1.Job) {
	t.Helper()
	hooks := strings.Split(j.Annotations["helm.sh/hook"], ",")
	if !slices.Contains(hooks, "pre-install") || !slices.Contains(hooks, "pre-upgrade") {
		t.Errorf("migrate Job hooks %v, want pre-install and pre-upgrade", hooks)
	}
	c := j.Spec.Template.Spec.Containers
	if len(c) != 1 || !slices.Equal(c[0].Args, []string{"migrate"}) {
		t.Errorf("migrate Job runs %+v, want `reversald migrate`", c)
	}
	if j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("migrate Job restartPolicy %q, want Never", j.Spec.Template.Spec.RestartPolicy)
	}
}

// checkPrometheusRule: the rule's groups are deploy/prometheus/alerts.yaml's, with only the
// runbook links pointed at the full values' address.
func checkPrometheusRule(t *testing.T, r monitoringv1.PrometheusRule) {
	t.Helper()
	src := strings.ReplaceAll(string(readRepoFile(t, "deploy/prometheus/alerts.yaml")),
		"https://github.com/reversald/reversald/blob/main/docs/runbook.md",
		"https://git.example.com/payments/reversald/-/blob/main/docs/runbook.md")
	var want monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict([]byte(src), &want); err != nil {
		t.Fatalf("alerts.yaml as a PrometheusRule spec: %v", err)
	}
	if !reflect.DeepEqual(r.Spec, want) {
		got, _ := yaml.Marshal(r.Spec)
		t.Errorf("the PrometheusRule is not alerts.yaml:\n%s", got)
	}
	if len(want.Groups) == 0 || len(want.Groups[0].Rules) < 8 {
		t.Errorf("alerts.yaml has %d groups: want its 8 alerts", len(want.Groups))
	}
}

func checkScaledObject(t *testing.T, s scaledObject, d appsv1.Deployment) {
	t.Helper()
	if s.Spec.ScaleTargetRef == nil || s.Spec.ScaleTargetRef.Name != d.Name {
		t.Errorf("ScaledObject targets %+v, want the Deployment %s", s.Spec.ScaleTargetRef, d.Name)
	}
	types := map[string]trigger{}
	for _, tr := range s.Spec.Triggers {
		types[tr.Type] = tr
	}
	// The real backlog and the lag, not the lag alone.
	p, k := types["prometheus"], types["kafka"]
	if !strings.Contains(p.Metadata["query"], "reversald_attempts_pending") || p.Metadata["serverAddress"] == "" || p.Metadata["threshold"] == "" {
		t.Errorf("prometheus trigger %+v: want the pending attempts against a threshold", p.Metadata)
	}
	if k.Metadata["topic"] == "" || k.Metadata["consumerGroup"] == "" || k.Metadata["bootstrapServers"] == "" || k.Metadata["lagThreshold"] == "" {
		t.Errorf("kafka trigger %+v: want the group's lag on the input topic", k.Metadata)
	}
	if k.AuthenticationRef == nil || k.AuthenticationRef.Name == "" {
		t.Error("the full values' kafka authenticationRef is not rendered")
	}
}

func checkServiceMonitor(t *testing.T, m monitoringv1.ServiceMonitor, svc corev1.Service) {
	t.Helper()
	if m.Spec.JobLabel != "app.kubernetes.io/name" || svc.Labels["app.kubernetes.io/name"] != "reversald" {
		t.Errorf("ServiceMonitor jobLabel %q / Service labels %v: the alerts need job=\"reversald\"", m.Spec.JobLabel, svc.Labels)
	}
	for k, v := range m.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, v, svc.Labels[k])
		}
	}
	if len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || m.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v do not scrape the Service's %s port at /metrics", m.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
}

// daemonVariables is every variable the daemon reads, from README's configuration table
// (cmd/reversald's config test keeps that table complete), secrets' _FILE forms, and the Go
// runtime's GOMEMLIMIT.
func daemonVariables(t *testing.T) map[string]bool {
	t.Helper()
	readme := string(readRepoFile(t, "README.md"))
	start := strings.Index(readme, "## Configuration")
	if start < 0 {
		t.Fatal("README.md has no Configuration section")
	}
	vars := map[string]bool{"GOMEMLIMIT": true}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\|").FindAllStringSubmatch(readme[start:], -1) {
		vars[m[1]] = true
	}
	for _, s := range []string{"DATABASE_URL", "QFPAY_CLIENT_KEY", "KAFKA_SASL_PASSWORD"} {
		if !vars[s] {
			t.Fatalf("README's table lacks %s", s)
		}
		vars[s+"_FILE"] = true
	}
	if len(vars) < 40 {
		t.Fatalf("README's configuration table gave only %d variables", len(vars))
	}
	return vars
}

// TestChartEnvPassesThrough: a value of env reaches the pods as a string, whatever its YAML type.
func TestChartEnvPassesThrough(t *testing.T) {
	t.Parallel()
	objs := byKind(render(t, valueSets["minimal"], "env.EXECUTOR_WORKERS=64", "env.PPROF=true"))
	got := map[string]string{}
	for _, e := range objs["Deployment"].(appsv1.Deployment).Spec.Template.Spec.Containers[0].Env {
		got[e.Name] = e.Value
	}
	if got["EXECUTOR_WORKERS"] != "64" || got["PPROF"] != "true" {
		t.Errorf("env values in the pod: EXECUTOR_WORKERS=%q PPROF=%q", got["EXECUTOR_WORKERS"], got["PPROF"])
	}
}

// TestStrictDecodingRefusesUnknownFields: the decoding the chart's objects go through refuses
// a field its type does not have (so the checks above can fail).
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicas: 1\n  terminationGracePeriod: 30\n")
	var d appsv1.Deployment
	err := yaml.UnmarshalStrict(doc, &d)
	if err == nil || !strings.Contains(err.Error(), "terminationGracePeriod") {
		t.Errorf("a misspelt field decoded: %v", err)
	}
	// KEDA's ScaledObject: TestKEDACRDValidation.
}
