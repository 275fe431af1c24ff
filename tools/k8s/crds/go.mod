// Pins the Prometheus operator whose CRDs (example/prometheus-operator-crd/, read from the Go module
// cache) the controlplane tests apply, since the chart renders PodMonitors, a ServiceMonitor and a
// PrometheusRule. v0.93.1 is the version of shared/crds' PodMonitor and ServiceMonitor
// CRDs (identical files). No package of it is built: install.sh only downloads the module (and
// `go mod tidy` would drop the requirement, since nothing imports it: edit this file by hand).
module rayscale.local/tools/k8s/crds

go 1.24.0

require github.com/prometheus-operator/prometheus-operator v0.93.1
