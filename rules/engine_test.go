package rules

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// flakySink is the table sink with a switch that makes Enqueue fail.
type flakySink struct {
	tableSink
	fail atomic.Bool
}

var errSinkDown = errors.New("outbox down")

func (s *flakySink) Enqueue(ctx context.Context, tx *sql.Tx, intents []event.Intent) error {
	if s.fail.Load() {
		return errSinkDown
	}
	return s.tableSink.Enqueue(ctx, tx, intents)
}

func runEngine(t *testing.T, e *Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestFailedCommitLosesNothing: when the outbox refuses a batch, the
// caller gets the error, memory is reloaded from the store, and the same
// decision is taken again once the outbox is back.
func TestFailedCommitLosesNothing(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			openSink(t, db)
			clk := clock.NewFake(t0)
			sink := &flakySink{}
			e, err := New(Config{Tick: time.Hour}, db, openDirectory(t, db, "testdata/contacts.csv"), sink, clk, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			runEngine(t, e)
			ctx := context.Background()
			if err := e.Handle(ctx, []event.Event{meterEv("M0202", event.PowerOff, 0)}); err != nil {
				t.Fatal(err)
			}
			clk.Set(t0.Add(61 * time.Second))
			sink.fail.Store(true)
			if err := e.Tick(ctx); !errors.Is(err, errSinkDown) {
				t.Fatalf("Tick with the outbox down = %v, want %v", err, errSinkDown)
			}
			if os := e.Outages(""); len(os) != 0 {
				t.Fatalf("after a failed commit Outages() = %v, want none (memory reloaded)", os)
			}
			sink.fail.Store(false)
			if err := e.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			got := readOutbox(t, db)
			kinds := map[string]string{}
			for _, s := range got {
				kinds[s.Kind] = s.Account + s.To
			}
			if len(got) != 2 || kinds["outage"] != "A0202" || kinds["manager_digest"] == "" {
				t.Errorf("outbox after recovery = %+v, want the outage intent of A0202 and a digest", got)
			}
		})
	}
}

// readViews reads every view of e, as the HTTP API does, until stop closes.
func readViews(e *Engine, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		for _, o := range e.Outages("") {
			e.Verification(o.ID)
			e.Customers(o.ID, "")
		}
		e.StormMode()
	}
}

// TestGroupCommit: many concurrent callers share transactions, and each
// returns only once its events are committed.
func TestGroupCommit(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	openSink(t, db)
	clk := clock.NewFake(t0)
	e, err := New(Config{Tick: time.Hour}, db, genDir(t, 2000, 100), tableSink{}, clk, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	before := testutil.ToFloat64(batchesDone)
	const callers, calls = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range calls {
				m := fmt.Sprintf("M%08d", (c*calls+k)%2000)
				if err := e.Handle(context.Background(), []event.Event{readingEv(m, time.Duration(k)*time.Second, 100)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() { readViews(e, stop) }) // the HTTP API reads while the writer writes
	for k := range 5 {
		clk.Set(t0.Add(time.Duration(k) * time.Minute))
		if err := e.Handle(context.Background(), []event.Event{meterEv(fmt.Sprintf("M%08d", k*100), event.PowerOff, time.Duration(k)*time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := e.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	batches := testutil.ToFloat64(batchesDone) - before
	if batches >= callers*calls {
		t.Errorf("%d calls took %v transactions, want fewer (group commit)", callers*calls, batches)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM rules_meter_log`).Scan(&n); err != nil || n == 0 {
		t.Errorf("meter log rows = %d (%v), want some", n, err)
	}
	t.Logf("%d calls in %v transactions", callers*calls, batches)
}
