package check

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	alertsFile     = "deploy/prometheus/alerts.yaml"
	alertTestsFile = "deploy/prometheus/alerts_test.yaml"
	runbookURL     = "https://github.com/reversald/reversald/blob/main/docs/runbook.md"
)

// TestPromtoolCheckRules: promtool accepts the rule file (syntax, PromQL, templates).
func TestPromtoolCheckRules(t *testing.T) {
	t.Parallel()
	out, err := runTool(t, "promtool", "check", "rules", alertsFile)
	if err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// TestPromtoolTestRules: promtool's unit tests of the alerts pass.
func TestPromtoolTestRules(t *testing.T) {
	t.Parallel()
	out, err := runTool(t, "promtool", "test", "rules", alertTestsFile)
	if err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(readRepoFile(t, alertsFile), &f); err != nil {
		t.Fatal(err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// TestEveryAlertIsTestedFiringAndResolved: each alert has a promtool test in which it is
// expected to fire and, later in the same test, expected quiet: the unit tests cover every
// alert both ways.
func TestEveryAlertIsTestedFiringAndResolved(t *testing.T) {
	t.Parallel()
	var f struct {
		Tests []struct {
			Name          string `json:"name"`
			AlertRuleTest []struct {
				EvalTime  string `json:"eval_time"`
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, alertTestsFile), &f); err != nil {
		t.Fatal(err)
	}
	fired, resolved := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		firedAt := map[string]bool{}
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname], firedAt[a.Alertname] = true, true
			} else if firedAt[a.Alertname] {
				resolved[a.Alertname] = true
			}
		}
	}
	rules := alertRules(t)
	if len(rules) < 8 {
		t.Fatalf("alerts.yaml has %d alerts", len(rules))
	}
	for _, r := range rules {
		if !fired[r.Alert] || !resolved[r.Alert] {
			t.Errorf("%s: fired in a test %v, resolved after firing %v: want both", r.Alert, fired[r.Alert], resolved[r.Alert])
		}
	}
}

// TestEveryAlertHasARunbook: each alert has a severity, a summary and a runbook_url that
// points at a heading of docs/runbook.md, and each of the runbook's alert headings is an alert.
func TestEveryAlertHasARunbook(t *testing.T) {
	t.Parallel()
	runbook := string(readRepoFile(t, "docs/runbook.md"))
	anchors := map[string]bool{}
	var headings []string
	for _, m := range regexp.MustCompile(`(?m)^### (\S+)\s*$`).FindAllStringSubmatch(runbook, -1) {
		anchors[strings.ToLower(m[1])] = true
		headings = append(headings, m[1])
	}
	var names []string
	for _, r := range alertRules(t) {
		names = append(names, r.Alert)
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: no summary or description", r.Alert)
		}
		anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookURL+"#")
		if !ok || !anchors[anchor] || anchor != strings.ToLower(r.Alert) {
			t.Errorf("%s: runbook_url %q is not %s#%s, a heading of docs/runbook.md", r.Alert, r.Annotations["runbook_url"], runbookURL, strings.ToLower(r.Alert))
		}
	}
	for _, h := range headings {
		if !slices.Contains(names, h) {
			t.Errorf("docs/runbook.md has a paragraph for %s, which alerts.yaml does not have", h)
		}
	}
}

// TestComposePrometheusConfig: docker-compose's Prometheus configuration passes promtool check
// config, with its rule file (mounted from alerts.yaml in compose) at its path here.
func TestComposePrometheusConfig(t *testing.T) {
	t.Parallel()
	cfg := strings.ReplaceAll(string(readRepoFile(t, "build/compose/prometheus.yml")),
		"/etc/prometheus/rules/alerts.yaml", repoFile(t, alertsFile))
	if !strings.Contains(cfg, repoFile(t, alertsFile)) || !strings.Contains(cfg, `job_name: reversald`) {
		t.Fatalf("build/compose/prometheus.yml does not load /etc/prometheus/rules/alerts.yaml or scrape job reversald:\n%s", cfg)
	}
	path := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, "promtool", "check", "config", path)
	if err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}
