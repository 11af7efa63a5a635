// Package check proves the deployment files: the Helm chart (helm lint, helm template, every
// rendered object decoded strictly against the Kubernetes and Prometheus Operator API types,
// the KEDA ScaledObject validated strictly against KEDA's own CRD schema), the alert rules
// (promtool check and unit tests), and every PromQL expression of the alerts, the dashboard and
// the chart against what a running daemon exports on /metrics.
//
// It is a module of its own so that k8s.io/api, the Prometheus Operator's types and
// prometheus/prometheus stay out of the daemon's go.mod. Nothing here may import client-go or
// controller-runtime (KEDA's Go types do): compiling them cold takes half an hour on CI's
// machine; TestNoHeavyDependencies keeps them out. Its tests need the dev stack (make up) and the pinned tools, which
// scripts/tools.sh installs; `make test` runs them.
package check
