package notify

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// TestAnalyzeAfterBulk: on PostgreSQL, a bulk of intents unpacked and
// expanded leaves the outbox tables analyzed (the planner sees their rows,
// not the empty tables it started with).
func TestAnalyzeAfterBulk(t *testing.T) {
	old := analyzeAfter
	analyzeAfter = 500
	t.Cleanup(func() { analyzeAfter = old })
	db := storetest.Open(t, "postgres")
	const n = bulkFrom + 500
	rec := &recorder{}
	o, err := NewOutbox(Config{Workers: 4}, QuietHours{}, db, loadRegistry(t, db, n), rec, clock.Real{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	tuples := func(table string) float64 {
		var r float64
		if err := db.QueryRow(`SELECT reltuples FROM pg_class WHERE oid = $1::regclass`, table).Scan(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := tuples("notify_messages"); r > 0 {
		t.Fatalf("a new outbox's notify_messages already has statistics (%v rows)", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	if err := o.Enqueue(context.Background(), nil, loadIntents(n, time.Now())); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for len(rec.messages()) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"notify_intents", "notify_messages", "notify_links"} {
		if r := tuples(table); r < float64(analyzeAfter)/2 {
			t.Errorf("%s: the planner sees %v rows after %d intents", table, r, n)
		}
	}
}
