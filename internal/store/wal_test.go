package store_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// TestWALBound writes a storm's volume through a SQLite store, 240 MB of
// page writes in transactions of 8 MB (the rules rewriting their rows, the
// outbox marking SMS sent), while readers overlap without pause (the API,
// the dispatcher), so that some reader always holds a snapshot. The WAL
// must stay under store.WALBound all along and end truncated; before the
// checkpointer truncated, it grew to several hundred MB here.
func TestWALBound(t *testing.T) {
	const (
		rows   = 2000 // of 4 KB: an 8 MB table, rewritten whole per transaction
		rounds = 30
	)
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: "sqlite"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, "test", []string{`CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`}); err != nil {
		t.Fatal(err)
	}

	var peak atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // the WAL's size, every 5 ms
		for {
			if _, wal := db.Size(); wal > peak.Load() {
				peak.Store(wal)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	var reads atomic.Int64
	for r := range 2 { // readers, each holding a snapshot for a while
		wg.Go(func() {
			time.Sleep(time.Duration(r) * 10 * time.Millisecond)
			for {
				select {
				case <-done:
					return
				default:
				}
				tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					t.Error(err)
					return
				}
				var n int
				tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n)
				time.Sleep(20 * time.Millisecond)
				tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE length(v) > 0`).Scan(&n)
				tx.Rollback()
				reads.Add(1)
			}
		})
	}

	val := strings.Repeat("x", 4000)
	for round := range rounds {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k := range rows {
			if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, k, val[round%10:]); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // the checkpointer's turn after the last commit, past its backoff
	close(done)
	wg.Wait()
	dbBytes, wal := db.Size()
	t.Logf("%d transactions of %d rows of 4 KB, %d reads beside: database %d bytes, WAL peak %d bytes, at the end %d bytes",
		rounds, rows, reads.Load(), dbBytes, peak.Load(), wal)
	if peak.Load() >= store.WALBound {
		t.Errorf("the WAL reached %d bytes, want it under store.WALBound (%d)", peak.Load(), store.WALBound)
	}
	if wal >= 16<<20 {
		t.Errorf("the WAL is %d bytes 3 s after the last commit; want it checkpointed and cut back", wal)
	}
}
