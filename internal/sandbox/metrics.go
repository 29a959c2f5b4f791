package sandbox

import "github.com/prometheus/client_golang/prometheus"

var (
	sandboxStarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sbx_sandbox_starts_total", Help: "Sandboxes started (created or woken).",
	})
	sandboxStops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sbx_sandbox_stops_total", Help: "Sandboxes stopped, by reason (request, idle, died).",
	}, []string{"reason"})
)

// Collectors returns the manager's Prometheus metrics, including a gauge of
// running sandboxes for m.
func (m *Manager) Collectors() []prometheus.Collector {
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sbx_sandboxes_running", Help: "Sandboxes running on this host.",
	}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(m.running)
	})
	return []prometheus.Collector{sandboxStarts, sandboxStops, running}
}
