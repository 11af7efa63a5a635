package check

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/segmentio/kafka-go"
	"sigs.k8s.io/yaml"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
	"github.com/reversald/reversald/store/storetest"
)

// query is one PromQL expression and where it was found.
type query struct{ where, expr string }

// alertQueries are the expressions of deploy/prometheus/alerts.yaml.
func alertQueries(t *testing.T) []query {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `json:"alert"`
				Record string `json:"record"`
				Expr   string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/prometheus/alerts.yaml"), &f); err != nil {
		t.Fatal(err)
	}
	var qs []query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			qs = append(qs, query{"alerts.yaml " + r.Alert + r.Record, r.Expr})
		}
	}
	return qs
}

type dashPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

// dashboardQueries are the panels' expressions of every dashboard in deploy/grafana, with
// Grafana's interval variables given a value.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	files, err := filepath.Glob(repoFile(t, "deploy/grafana/*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboard in deploy/grafana: %v", err)
	}
	grafanaVars := strings.NewReplacer("$__rate_interval", "2m", "$__interval", "1m", "$__range", "1h")
	var qs []query
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []dashPanel `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var walk func([]dashPanel)
		walk = func(ps []dashPanel) {
			for _, p := range ps {
				for _, tg := range p.Targets {
					qs = append(qs, query{filepath.Base(file) + " " + p.Title, grafanaVars.Replace(tg.Expr)})
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
	}
	return qs
}

// scalerQueries are the chart's KEDA Prometheus queries (full values).
func scalerQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, o := range render(t, valueSets["full"]) {
		if s, ok := o.obj.(scaledObject); ok {
			for _, tr := range s.Spec.Triggers {
				if tr.Type == "prometheus" {
					qs = append(qs, query{"ScaledObject trigger", tr.Metadata["query"]})
				}
			}
		}
	}
	return qs
}

// selector is one series selector of a query: the metric and its label matchers.
type selector struct {
	name     string
	matchers []*labels.Matcher
}

func selectors(expr parser.Expr) []selector {
	var out []selector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := selector{name: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				if s.name == "" && m.Type == labels.MatchEqual {
					s.name = m.Value
				}
				continue
			}
			s.matchers = append(s.matchers, m)
		}
		out = append(out, s)
		return nil
	})
	return out
}

// targetLabels are added by Prometheus to every scraped series; the daemon never exports them.
var targetLabels = map[string]bool{"job": true, "instance": true, "namespace": true, "pod": true, "service": true, "endpoint": true, "container": true}

// generatedMetrics are series Prometheus makes itself, not a target.
var generatedMetrics = map[string]bool{"up": true}

// TestQueriesUseExportedMetrics parses every PromQL expression of the alerts, the dashboard
// and the chart's scaler, and checks each series they select against a real daemon's
// /metrics: the metric is exported, each label it matches on is one of the metric's, and an
// exact label value is one the daemon exports.
func TestQueriesUseExportedMetrics(t *testing.T) {
	t.Parallel()
	var qs []query
	qs = append(qs, alertQueries(t)...)
	qs = append(qs, dashboardQueries(t)...)
	qs = append(qs, scalerQueries(t)...)
	if len(qs) < 40 {
		t.Fatalf("found only %d queries", len(qs))
	}
	var sels []struct {
		where string
		s     selector
	}
	for _, q := range qs {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, q.expr)
			continue
		}
		for _, s := range selectors(expr) {
			sels = append(sels, struct {
				where string
				s     selector
			}{q.where, s})
		}
	}
	if t.Failed() {
		return
	}
	exported := scrapeExercisedDaemon(t)
	checked := 0
	for _, x := range sels {
		if generatedMetrics[x.s.name] {
			continue
		}
		series, ok := exported[x.s.name]
		if !ok {
			t.Errorf("%s: %s is not exported by the daemon", x.where, x.s.name)
			continue
		}
		for _, m := range x.s.matchers {
			if targetLabels[m.Name] {
				continue
			}
			values, ok := series[m.Name]
			if !ok {
				t.Errorf("%s: %s has no label %q (it has %v)", x.where, x.s.name, m.Name, slices.Sorted(mapsKeys(series)))
				continue
			}
			if m.Type == labels.MatchEqual && !values[m.Value] {
				t.Errorf("%s: %s never has %s=%q (seen: %v)", x.where, x.s.name, m.Name, m.Value, slices.Sorted(mapsKeys(values)))
			}
		}
		checked++
	}
	t.Logf("%d queries, %d series selectors checked against the daemon's /metrics", len(qs), checked)
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// exportedSeries maps each exported series name (a histogram's _bucket, _sum and _count
// included) to its label names and the values seen for each.
type exportedSeries map[string]map[string]map[string]bool

// scrapeExercisedDaemon runs the real daemon against the dev stack's PostgreSQL and Kafka and
// an in-process QFPay sandbox, settles a payment and dead-letters a bad event so that the
// series that appear only once used exist, and returns what /metrics then exports.
func scrapeExercisedDaemon(t *testing.T) exportedSeries {
	t.Helper()
	const (
		appCode = "CHECKAPPCODE"
		key     = "check-client-key-not-logged"
		mchid   = "MNxMp11FV35qQN"
	)
	brokers := testenv.KafkaBrokers(t)
	dbURL := storetest.URL(t)
	sb, sbURL, stop, err := sandbox.Start(sandbox.Config{AppCode: appCode, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	in := kafkatest.NewTopic(t, brokers, "chk-in", 2)
	dlq := kafkatest.NewTopic(t, brokers, "chk-dlq", 1)
	results := kafkatest.NewTopic(t, brokers, "chk-out", 2)
	group := kafkatest.RandomName("chk-g")
	if err := sb.Put(sandbox.Txn{MchID: mchid, OutTradeNo: "CHK1", State: sandbox.StateInFlight, PayType: "800101", TxAmt: 2500}); err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	cmd := exec.Command(daemonBinary(t), "run")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL, "KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"KAFKA_INPUT_TOPIC=" + in, "KAFKA_DLQ_TOPIC=" + dlq, "KAFKA_RESULTS_TOPIC=" + results, "KAFKA_GROUP_ID=" + group,
		"QFPAY_BASE_URL=" + sbURL, "QFPAY_APP_CODE=" + appCode, "QFPAY_CLIENT_KEY=" + key,
		"HTTP_ADDR=" + addr, "EXECUTOR_POLL_INTERVAL=100ms", "EXECUTOR_BACKOFF_BASE=50ms", "EXECUTOR_BACKOFF_MAX=400ms",
		"PUBLISH_INTERVAL=50ms", "SHUTDOWN_TIMEOUT=10s",
	}
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the daemon exited with %v after SIGTERM", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("the daemon did not stop within 30s of SIGTERM")
		}
		if strings.Contains(logs.String(), key) {
			t.Error("the client key is in the daemon's logs")
		}
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs.String())
		}
	})

	v, _ := json.Marshal(map[string]any{
		"event_id": "chk-1", "out_trade_no": "CHK1", "mchid": mchid, "txamt": 2500, "txcurrcd": "HKD",
		"txdtm": time.Now().Add(-time.Minute).Format(qfpay.TxDtmLayout), "pay_type": "800101", "reason": "timeout",
	})
	kafkatest.Produce(t, brokers, in,
		kafka.Message{Key: []byte("CHK1"), Value: v},
		kafka.Message{Key: []byte("bad"), Value: []byte("not json")})

	var got exportedSeries
	var last string
	kafkatest.WaitFor(t, 120*time.Second, func() bool {
		got, last = scrape(t, addr)
		return got != nil &&
			got.has("reversald_outcomes_published_total", "", "") && got.value(last, "reversald_outcomes_published_total") >= 1 &&
			got.has("reversald_dlq_total", "", "") && got.value(last, "reversald_dlq_total") >= 1 &&
			got.has("reversald_consumer_lag", "partition", "") &&
			got.has("reversald_collector_up", "collector", "kafka") && strings.Contains(last, `reversald_collector_up{collector="kafka"} 1`) &&
			strings.Contains(last, `reversald_collector_up{collector="database"} 1`)
	}, "the daemon to settle and publish the payment, dead-letter the bad event and serve the group's lag")
	t.Logf("the exercised daemon's resident memory: %.1f MiB", got.value(last, "process_resident_memory_bytes")/(1<<20))
	return got
}

// has reports whether name is exported with label l (any value when v is "").
func (e exportedSeries) has(name, l, v string) bool {
	s, ok := e[name]
	if !ok || l == "" {
		return ok
	}
	vals, ok := s[l]
	return ok && (v == "" || vals[v])
}

// value is the sum of the samples of an unlabelled series name in a scrape's text.
func (exportedSeries) value(text, name string) float64 {
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return -1
	}
	f, ok := fams[name]
	if !ok {
		return -1
	}
	sum := 0.0
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// scrape reads /metrics once; nil when it does not answer 200.
func scrape(t *testing.T, addr string) (exportedSeries, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		return nil, ""
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	out := exportedSeries{}
	add := func(name string, lbls map[string]string) {
		if out[name] == nil {
			out[name] = map[string]map[string]bool{}
		}
		for k, v := range lbls {
			if out[name][k] == nil {
				out[name][k] = map[string]bool{}
			}
			out[name][k][v] = true
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			lbls := map[string]string{}
			for _, lp := range m.GetLabel() {
				lbls[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Histogram != nil:
				add(name+"_sum", lbls)
				add(name+"_count", lbls)
				for _, bk := range m.GetHistogram().GetBucket() {
					with := map[string]string{"le": fmt.Sprint(bk.GetUpperBound())}
					for k, v := range lbls {
						with[k] = v
					}
					add(name+"_bucket", with)
				}
				add(name+"_bucket", map[string]string{"le": "+Inf"})
			case m.Summary != nil:
				add(name, lbls)
				add(name+"_sum", lbls)
				add(name+"_count", lbls)
			default:
				add(name, lbls)
			}
		}
	}
	return out, b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var (
	buildOnce sync.Once
	binPath   string
	errBuild  error
)

// daemonBinary builds cmd/reversald, in the daemon's own module, once per test run.
func daemonBinary(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "reversald-check-")
		if err != nil {
			errBuild = err
			return
		}
		binPath = filepath.Join(dir, "reversald")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/reversald")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			errBuild = fmt.Errorf("go build ./cmd/reversald: %w\n%s", err, out)
		}
	})
	if errBuild != nil {
		t.Fatal(errBuild)
	}
	return binPath
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
