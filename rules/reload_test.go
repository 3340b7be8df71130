//go:build faults

package rules

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/faults"
	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/internal/store"
)

// handleRetrying hands evs on the way ingest does: again and again until
// the engine takes them. It counts the refusals that said "reloading".
func handleRetrying(t *testing.T, e *Engine, evs []event.Event, reloading *atomic.Int64) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := e.Handle(context.Background(), evs)
		if err == nil {
			return
		}
		if errors.Is(err, ErrReloading) {
			reloading.Add(1)
		}
		if time.Now().After(deadline) {
			t.Errorf("events never taken: %v", err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// burst sends one event per meter from 20 callers, in small batches.
func burst(t *testing.T, e *Engine, n int, ev func(m string) event.Event, reloading *atomic.Int64) {
	var wg sync.WaitGroup
	for c := range 20 {
		wg.Go(func() {
			for k := c * 5; k < n; k += 100 {
				var evs []event.Event
				for j := k; j < min(k+5, n); j++ {
					evs = append(evs, ev(fmt.Sprintf("M%08d", j)))
				}
				handleRetrying(t, e, evs, reloading)
			}
		})
	}
	wg.Wait()
}

// waitReady waits up to 30 s for e.Ready to say nil.
func waitReady(t *testing.T, e *Engine) time.Duration {
	t.Helper()
	t0 := time.Now()
	for e.Ready() != nil {
		if time.Since(t0) > 30*time.Second {
			t.Fatalf("not ready 30 s after the store came back: %v", e.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(t0)
}

// TestFaultStoreRestartNeverPartial stops and restarts a private PostgreSQL
// (fast and immediate) during a power_off burst, while the outage decisions
// commit, and during the power_on burst. The rules must refuse input while
// they cannot reload (never acting on a partial state), report not ready,
// come back by themselves, and in the end every customer has exactly one
// outage and one restored intent (the test sink fails a transaction on a

// faultEngine runs an engine on db over n customers (30 to an area), its
// intents to the test sink, ticking every 50 ms on a fake clock at t0.
func faultEngine(t *testing.T, db *store.DB, n int) (*Engine, *clock.Fake) {
	t.Helper()
	openSink(t, db)
	clk := clock.NewFake(t0)
	e, err := New(Config{Tick: 50 * time.Millisecond}, db, genDir(t, n, 30), tableSink{}, clk, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	return e, clk
}

// repeated intent key, so a duplicate would show as an error).
func TestFaultStoreRestartNeverPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private PostgreSQL")
	}
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			pg := faults.StartPostgres(t)
			db, err := store.Open(context.Background(), store.Config{Driver: "postgres", DSN: pg.DSN()}, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			const n = 3000
			e, clk := faultEngine(t, db, n)
			var reloading atomic.Int64
			restart := func(after time.Duration) {
				time.Sleep(after)
				pg.Stop(mode)
				time.Sleep(time.Second)
				if e.Ready() == nil {
					t.Error("ready while the store is down")
				}
				pg.Start()
			}

			// 1: the store goes away during the power_off burst.
			go restart(100 * time.Millisecond)
			burst(t, e, n, func(m string) event.Event { return meterEv(m, event.PowerOff, 0) }, &reloading)
			time.Sleep(1200 * time.Millisecond) // the restart is over
			t.Logf("power_off burst: ready %s after the restart", waitReady(t, e))

			// 2: while the outage decisions commit.
			clk.Set(t0.Add(61 * time.Second))
			pg.Stop(mode)
			if err := e.Tick(context.Background()); err == nil {
				t.Fatal("Tick committed with the store down")
			}
			pg.Start()
			for e.Tick(context.Background()) != nil {
				time.Sleep(50 * time.Millisecond)
			}
			waitReady(t, e)

			// 3: during the power_on burst.
			clk.Set(t0.Add(10 * time.Minute))
			go restart(100 * time.Millisecond)
			burst(t, e, n, func(m string) event.Event { return meterEv(m, event.PowerOn, 10*time.Minute) }, &reloading)
			time.Sleep(1200 * time.Millisecond)
			waitReady(t, e)
			clk.Set(t0.Add(12 * time.Minute))
			for e.Tick(context.Background()) != nil {
				time.Sleep(50 * time.Millisecond)
			}

			if reloading.Load() == 0 {
				t.Error("no input was refused as reloading: the faults missed the bursts")
			}
			t.Logf("input refused while reloading %d times", reloading.Load())
			checkOutageOnce(t, db, n)
			for _, o := range e.Outages("active") {
				t.Errorf("outage %s still active with every meter back", o.ID)
			}
		})
	}
}

// TestFaultDiskFullRetriesCommit puts a SQLite store on a small tmpfs and
// fills it during a power_off burst and while the outage decisions commit.
// The store still reads, so the rules must hold the refused batch and
// retry the same commit (no reload, no input refused as reloading),
// report not ready meanwhile, and take everything once space returns:
// every customer then has exactly one outage and one restored intent.
func TestFaultDiskFullRetriesCommit(t *testing.T) {
	ctx := context.Background()
	disk := faults.SmallDisk(t, 32<<20)
	db, err := store.Open(ctx, store.Config{Driver: "sqlite"}, disk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	const n = 3000
	e, clk := faultEngine(t, db, n)
	reloads0 := metrics.Default.Sum("gridbell_rules_reloads_total")
	retries0 := metrics.Default.Sum("gridbell_rules_commit_retries_total")
	var reloading atomic.Int64
	// fill fills the disk with an empty WAL (what the WAL file still
	// holds would take a few commits), runs f, and frees the disk 2 s
	// later; not ready meanwhile.
	fill := func(phase string, f func()) {
		if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			t.Fatal(err)
		}
		free := faults.Fill(t, disk)
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		time.Sleep(2 * time.Second)
		notReady := e.Ready()
		free()
		<-done
		t.Logf("%s: disk full 2 s, the rules said %v; ready %s after space returned", phase, notReady, waitReady(t, e))
		if notReady == nil {
			t.Errorf("%s: the rules were ready on a full disk", phase)
		}
	}

	fill("power_off burst", func() {
		burst(t, e, n, func(m string) event.Event { return meterEv(m, event.PowerOff, 0) }, &reloading)
	})
	clk.Set(t0.Add(61 * time.Second))
	fill("outage decisions", func() {
		if err := e.Tick(ctx); err != nil {
			t.Errorf("the Tick whose commit the disk refused: %v, want it committed once space returned", err)
		}
	})
	clk.Set(t0.Add(10 * time.Minute))
	burst(t, e, n, func(m string) event.Event { return meterEv(m, event.PowerOn, 10*time.Minute) }, &reloading)
	clk.Set(t0.Add(12 * time.Minute))
	if err := e.Tick(ctx); err != nil {
		t.Fatal(err)
	}

	reloads := metrics.Default.Sum("gridbell_rules_reloads_total") - reloads0
	retries := metrics.Default.Sum("gridbell_rules_commit_retries_total") - retries0
	t.Logf("commit retries %v, reloads %v, input refused as reloading %d", retries, reloads, reloading.Load())
	if retries == 0 {
		t.Error("no commit was retried: the full disk refused nothing")
	}
	if reloads != 0 || reloading.Load() != 0 {
		t.Errorf("%v reloads, input refused as reloading %d times; want none on a full disk that still reads", reloads, reloading.Load())
	}
	checkOutageOnce(t, db, n)
}

// checkOutageOnce fails unless each of the n customers of genDir has
// exactly one outage and one restored intent in db's test outbox.
func checkOutageOnce(t *testing.T, db *store.DB, n int) {
	t.Helper()
	per := map[string]map[string]int{}
	for _, s := range readOutbox(t, db) {
		if per[s.Kind] == nil {
			per[s.Kind] = map[string]int{}
		}
		per[s.Kind][s.Account]++
	}
	for _, kind := range []string{"outage", "restored"} {
		lost, dup := 0, 0
		for k := range n {
			switch c := per[kind][fmt.Sprintf("A%08d", k)]; {
			case c == 0:
				lost++
			case c > 1:
				dup += c - 1
			}
		}
		t.Logf("%s: lost %d, duplicated %d of %d", kind, lost, dup, n)
		if lost != 0 || dup != 0 {
			t.Errorf("%s intents: lost %d, duplicated %d; want 0, 0", kind, lost, dup)
		}
	}
}
