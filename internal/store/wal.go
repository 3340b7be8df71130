package store

import (
	"os"

	"github.com/gridbell/gridbell/internal/metrics"
)

// walMonitor measures a SQLite store's files and counts its truncating
// checkpoints.
type walMonitor struct {
	db, wal string // paths

	dbBytes, walBytes metrics.Gauge
	checkpoints       *metrics.CounterVec
}

func newWALMonitor(path string) *walMonitor {
	m := &walMonitor{db: path, wal: path + "-wal",
		dbBytes:  metrics.Default.Gauge("gridbell_store_db_bytes", "size of the SQLite database file"),
		walBytes: metrics.Default.Gauge("gridbell_store_wal_bytes", "size of the SQLite write-ahead log file"),
		checkpoints: metrics.Default.CounterVec("gridbell_store_wal_checkpoints_total",
			"truncating checkpoints of the SQLite WAL by result: truncated; busy (readers or the writer did not finish in time); failed (an error, such as a full disk). Busy and failed ones are tried again.", "result"),
	}
	for _, r := range []string{"truncated", "busy", "failed"} {
		m.checkpoints.WithLabelValues(r)
	}
	m.sample()
	return m
}

// sample reads the files' sizes (0 for one that does not exist) and
// exports them.
func (m *walMonitor) sample() (dbBytes, walBytes int64) {
	if fi, err := os.Stat(m.db); err == nil {
		dbBytes = fi.Size()
	}
	if fi, err := os.Stat(m.wal); err == nil {
		walBytes = fi.Size()
	}
	m.dbBytes.Set(float64(dbBytes))
	m.walBytes.Set(float64(walBytes))
	return dbBytes, walBytes
}

// checkpointed counts a truncating checkpoint and samples the sizes again.
func (m *walMonitor) checkpointed(err error, busy bool) {
	switch {
	case err != nil:
		m.checkpoints.WithLabelValues("failed").Inc()
	case busy:
		m.checkpoints.WithLabelValues("busy").Inc()
	default:
		m.checkpoints.WithLabelValues("truncated").Inc()
	}
	m.sample()
}
