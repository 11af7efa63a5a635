// Package check proves the deployment files: the Helm chart (helm lint, helm template, every
// rendered object decoded strictly against the Kubernetes, Prometheus Operator and KEDA API
// types), the alert rules (promtool check and unit tests), and every PromQL expression of the
// alerts, the dashboard and the chart against what a running daemon exports on /metrics.
//
// It is a module of its own so that k8s.io/api, KEDA and prometheus/prometheus stay out of the
// daemon's go.mod. Its tests need the dev stack (make up) and the pinned tools, which
// scripts/tools.sh installs; `make test` runs them.
package check
