package snapshot

import (
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// managerMetrics are the snapshot metrics, labelled by table:
// observer_snapshot_rows_total (READ events handed on), observer_snapshot_chunks_total
// (chunks completed) and observer_snapshot_remaining_rows (estimated rows left to read
// by the running snapshot of the table).
type managerMetrics struct {
	set *metrics.Set
	m   *Manager

	mu     sync.Mutex
	tables map[string]bool // tables whose remaining gauge exists
}

func newManagerMetrics(set *metrics.Set, m *Manager) *managerMetrics {
	return &managerMetrics{set: set, m: m, tables: map[string]bool{}}
}

func label(table string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `{table="` + r.Replace(table) + `"}`
}

func (mm *managerMetrics) rows(table string) *metrics.Counter {
	mm.gauge(table)
	return mm.set.GetOrCreateCounter("observer_snapshot_rows_total" + label(table))
}

func (mm *managerMetrics) chunks(table string) *metrics.Counter {
	mm.gauge(table)
	return mm.set.GetOrCreateCounter("observer_snapshot_chunks_total" + label(table))
}

// gauge creates the table's remaining-rows gauge once.
func (mm *managerMetrics) gauge(table string) {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	if mm.tables[table] {
		return
	}
	mm.tables[table] = true
	mm.set.GetOrCreateGauge("observer_snapshot_remaining_rows"+label(table), func() float64 {
		mm.m.mu.Lock()
		j := mm.m.cur
		mm.m.mu.Unlock()
		if j == nil || j.info.Table != table {
			return 0
		}
		return float64(max(j.info.RowsEstimate-j.progressNow().rowsRead, 0))
	})
}
