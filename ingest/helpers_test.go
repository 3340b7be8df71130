package ingest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/event"
)

// recorder is a Handler that records what it is handed, by a key that is
// the same for a redelivered duplicate.
type recorder struct {
	mu    sync.Mutex
	fails int // fail this many calls first
	calls int
	evs   []event.Event
	keys  map[string]int
}

// storeDown is what the rules answer while their store is down: temporary.
type storeDown struct{}

func (storeDown) Error() string   { return "store is down" }
func (storeDown) Temporary() bool { return true }

func newRecorder() *recorder { return &recorder{keys: map[string]int{}} }

func (r *recorder) Handle(ctx context.Context, evs []event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fails > 0 {
		r.fails--
		return storeDown{}
	}
	for _, e := range evs {
		r.evs = append(r.evs, e)
		r.keys[eventKey(e)]++
	}
	return nil
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

func (r *recorder) events() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.evs...)
}

func (r *recorder) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key] > 0
}

func eventKey(e event.Event) string {
	switch {
	case e.Reading != nil:
		return fmt.Sprintf("r/%s/%d", e.Reading.Meter, e.Reading.TS.UnixMilli())
	case e.Meter != nil:
		return fmt.Sprintf("m/%s/%s/%d", e.Meter.Meter, e.Meter.Type, e.Meter.TS.UnixMilli())
	case e.Concentrator != nil:
		return fmt.Sprintf("c/%s/%s/%d", e.Concentrator.Concentrator, e.Concentrator.Type, e.Concentrator.TS.UnixMilli())
	case e.Outage != nil:
		return fmt.Sprintf("o/%s/%d", e.Outage.OutageID, e.Outage.UpdatedAt.UnixMilli())
	case e.Billing != nil:
		return fmt.Sprintf("b/%s/%s/%d", e.Billing.Account, e.Billing.Type, e.Billing.At.UnixMilli())
	}
	return "?"
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testLog(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// running is a component's Run on a goroutine of its own.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// goRun starts run; stop ends it.
func goRun(run func(context.Context) error) running {
	ctx, cancel := context.WithCancel(context.Background())
	r := running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx) }()
	return r
}

// stop cancels Run's context and fails t unless Run returns nil within 20 s.
func (r running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
}

type mapDirectory map[string]string

func (d mapDirectory) MeterArea(m string) (string, bool) { a, ok := d[m]; return a, ok }
