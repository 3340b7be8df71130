package rules

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// pruneRig runs engines with their writer loop on one store.
type pruneRig struct {
	t   *testing.T
	db  *store.DB
	dir Directory
	clk *clock.Fake
	e   *Engine
	// stop ends the running engine's writer loop and waits for it
	stop func()
}

// open stops the running engine, if any, and starts a new one on the
// store: a restart.
func (r *pruneRig) open() {
	r.t.Helper()
	if r.stop != nil {
		r.stop()
	}
	e, err := New(Config{}, r.db, r.dir, tableSink{}, r.clk, zerolog.Nop())
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	r.e = e
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Error(err)
		}
		r.stop = nil
	}
	r.t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
	})
}

// at applies evs at t0+d, then takes the decisions due by then.
func (r *pruneRig) at(d time.Duration, evs ...event.Event) {
	r.t.Helper()
	r.clk.Set(t0.Add(d))
	ctx := context.Background()
	if err := r.e.Handle(ctx, evs); err != nil {
		r.t.Fatal(err)
	}
	if err := r.e.Tick(ctx); err != nil {
		r.t.Fatal(err)
	}
}

func (r *pruneRig) rows(q string, args ...any) []string {
	r.t.Helper()
	rows, err := r.db.Query(q, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			r.t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// told counts the intents of kind about ref, per account.
func (r *pruneRig) told(kind, ref string) map[string]int {
	n := map[string]int{}
	for _, s := range readOutbox(r.t, r.db) {
		if s.Kind == kind && s.Ref == ref {
			n[s.Account]++
		}
	}
	return n
}

func omsEv(id, status string, areas []string, feeders []string, d time.Duration) event.Event {
	start := t0
	return event.Event{Outage: &event.OMSOutage{OutageID: id, Kind: "fault", Status: status, Areas: areas,
		Feeders: feeders, Start: &start, UpdatedAt: t0.Add(d)}}
}

func meters(typ event.MeterEventType, d time.Duration, ids ...string) []event.Event {
	var evs []event.Event
	for _, id := range ids {
		evs = append(evs, meterEv(id, typ, d))
	}
	return evs
}

// TestPruneFinishedOutages: a restored outage closed before the cut-off
// goes from the store and from memory, with the AMI record merged into it;
// a live outage, and what its customers were told, are untouched: they
// still get exactly one restored SMS each, after the prune and after a
// restart. A later outage on the pruned outage's meters works as before.
func TestPruneFinishedOutages(t *testing.T) {
	const m = time.Minute
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			openSink(t, db)
			r := &pruneRig{t: t, db: db, dir: openDirectory(t, db, "testdata/contacts.csv"), clk: clock.NewFake(t0)}
			r.open()
			ctx := context.Background()

			// TA-01 goes dark (an AMI record), the OMS then reports F-1
			// (TA-01, TA-02) and absorbs it; TA-04 is a second, separate fault.
			r.at(0, meters(event.PowerOff, 0, "M0101", "M0102")...)
			r.at(2 * m)
			r.at(5*m, omsEv("OMS-1", event.StatusStarted, nil, []string{"F-1"}, 5*m), omsEv("OMS-2", event.StatusStarted, []string{"TA-04"}, nil, 5*m))
			ami := r.rows(`SELECT id FROM rules_outages WHERE status = 'merged'`)
			if len(ami) != 1 {
				t.Fatalf("merged records %v, want the AMI record of TA-01", ami)
			}
			// F-1 comes back.
			r.at(60*m, meters(event.PowerOn, 60*m, "M0101", "M0102", "M0103", "M0104", "M0201", "M0202", "M0203", "M0204")...)
			r.at(61*m, omsEv("OMS-1", event.StatusRestored, nil, []string{"F-1"}, 61*m))
			if o, _ := r.e.Outage("OMS-1"); o.Status != statusRestored {
				t.Fatalf("OMS-1 is %s, want restored", o.Status)
			}
			live, _ := r.e.Outage("OMS-2")
			liveTold := r.rows(`SELECT data FROM rules_told WHERE outage = $1`, "OMS-2")
			notified2 := r.told("outage", "OMS-2")
			if len(notified2) == 0 || len(liveTold) != 1 {
				t.Fatalf("OMS-2 told %v, rules_told %v: want its customers told", notified2, liveTold)
			}
			records := len(r.e.outages)

			// Not yet older than the cut-off: kept.
			if n, err := r.e.Prune(ctx, t0.Add(30*m), 100); err != nil || n != 0 {
				t.Fatalf("Prune before the restoration = %d, %v; want 0", n, err)
			}
			n, err := r.e.PruneAll(ctx, t0.Add(120*m))
			if err != nil || n != 1 {
				t.Fatalf("PruneAll = %d, %v; want 1 (OMS-1)", n, err)
			}
			for _, id := range []string{"OMS-1", ami[0]} {
				if _, ok := r.e.Outage(id); ok {
					t.Errorf("%s still answers after the prune", id)
				}
			}
			if got := r.e.Outages(""); len(got) != 1 || got[0].ID != "OMS-2" {
				t.Errorf("outages after the prune: %+v, want only OMS-2", got)
			}
			if got := r.rows(`SELECT id FROM rules_outages`); !reflect.DeepEqual(got, []string{"OMS-2"}) {
				t.Errorf("rules_outages holds %v, want OMS-2 only", got)
			}
			if got := r.rows(`SELECT outage FROM rules_told`); !reflect.DeepEqual(got, []string{"OMS-2"}) {
				t.Errorf("rules_told holds %v, want OMS-2 only", got)
			}
			if got := len(r.e.outages); got != records-2 {
				t.Errorf("memory holds %d records, want %d (the pruned one and its merged AMI record gone)", got, records-2)
			}
			if got, _ := r.e.Outage("OMS-2"); !reflect.DeepEqual(got, live) {
				t.Errorf("OMS-2 changed by the prune:\n got %+v\nwant %+v", got, live)
			}
			if got := r.rows(`SELECT data FROM rules_told WHERE outage = $1`, "OMS-2"); !reflect.DeepEqual(got, liveTold) {
				t.Errorf("OMS-2's told set changed by the prune: %v, was %v", got, liveTold)
			}

			// The live outage goes on: TA-04 comes back, half before a restart
			// and half after, and each customer told of OMS-2 gets exactly
			// one restored SMS.
			r.at(90*m, meters(event.PowerOn, 90*m, "M0401", "M0402")...)
			r.at(91*m, omsEv("OMS-2", event.StatusRestored, []string{"TA-04"}, nil, 91*m))
			if got := r.told("restored", "OMS-2"); len(got) != 2 {
				t.Errorf("restored SMS for OMS-2 before the restart: %v, want A0401 and A0402", got)
			}
			r.open()
			if _, ok := r.e.Outage("OMS-1"); ok {
				t.Error("OMS-1 answers again after a restart")
			}
			r.at(92*m, meters(event.PowerOn, 92*m, "M0403", "M0404")...)
			restored := r.told("restored", "OMS-2")
			for acct := range notified2 {
				if restored[acct] != 1 {
					t.Errorf("account %s: %d restored SMS for OMS-2, want 1", acct, restored[acct])
				}
			}
			if len(restored) != len(notified2) {
				t.Errorf("restored SMS for OMS-2 to %d accounts, told %d", len(restored), len(notified2))
			}

			// TA-01 goes dark again: a new outage, its customers told once.
			r.at(180*m, meters(event.PowerOff, 180*m, "M0101", "M0102")...)
			r.at(182 * m)
			var again int
			for _, s := range readOutbox(t, db) {
				if s.Kind == "outage" && s.Account == "A0101" {
					again++
				}
			}
			if again != 2 {
				t.Errorf("A0101 got %d outage SMS in all, want 2 (one per outage)", again)
			}
		})
	}
}
