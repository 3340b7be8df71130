package rules

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// plainReading is a reading with nothing but evidence of power.
func plainReading(id string, d time.Duration) event.Event {
	return event.Event{Reading: &event.Reading{Meter: id, TS: t0.Add(d), KWh: 1}}
}

// seenRig drives engines on one store, as restarts of one process would.
type seenRig struct {
	t   *testing.T
	db  *store.DB
	dir Directory
	clk *clock.Fake
}

func newSeenRig(t *testing.T, driver string) *seenRig {
	db := storetest.Open(t, driver)
	openSink(t, db)
	return &seenRig{t: t, db: db, dir: openDirectory(t, db, "testdata/contacts.csv"), clk: clock.NewFake(t0)}
}

// open starts an engine on the rig's store: after another engine on it, a
// restart that skipped whatever that one had not written.
func (r *seenRig) open() *Engine {
	e, err := New(Config{}, r.db, r.dir, tableSink{}, r.clk, zerolog.Nop())
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

// step applies evs at t0+d as one batch; no evs is an idle tick.
func (r *seenRig) step(e *Engine, d time.Duration, evs ...event.Event) {
	r.t.Helper()
	r.clk.Set(t0.Add(d))
	var batch []*request
	if len(evs) > 0 {
		batch = append(batch, &request{evs: evs, done: make(chan error, 1)})
	}
	e.process(batch)
	for _, q := range batch {
		if err := <-q.done; err != nil {
			r.t.Fatal(err)
		}
	}
}

// stored is what the store holds of the meters: log rows and the seen
// column of every checkpointed meter.
func (r *seenRig) stored() (logRows int, seen map[string]int64) {
	r.t.Helper()
	if err := r.db.QueryRow(`SELECT COUNT(*) FROM rules_meter_log`).Scan(&logRows); err != nil {
		r.t.Fatal(err)
	}
	rows, err := r.db.Query(`SELECT meter, seen FROM rules_meters`)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	seen = map[string]int64{}
	for rows.Next() {
		var id string
		var s int64
		if err := rows.Scan(&id, &s); err != nil {
			r.t.Fatal(err)
		}
		seen[id] = s
	}
	return logRows, seen
}

// TestPlainReadingWritesNothing: once a meter is known powered, its
// readings change nothing in the store until the last-seen sweep is due
// (seenFlushEvery), however far their times move.
func TestPlainReadingWritesNothing(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			r := newSeenRig(t, driver)
			e := r.open()
			r.step(e, 0, plainReading("M0101", 0), plainReading("M0102", 0))
			r.step(e, time.Second) // a first sight is the sweep's to write, like a last-seen time
			logRows, before := r.stored()
			if logRows != 0 || len(before) != 0 {
				t.Fatalf("after the first readings: %d log rows, seen %v; want nothing written", logRows, before)
			}
			for k := 1; k <= 20; k++ {
				d := time.Duration(k) * time.Minute
				r.step(e, d, plainReading("M0101", d), plainReading("M0102", d))
				r.step(e, d+time.Second)
			}
			logRows, after := r.stored()
			if logRows != 0 {
				t.Errorf("plain readings wrote %d meter log rows, want 0", logRows)
			}
			if after["M0101"] != before["M0101"] || after["M0102"] != before["M0102"] {
				t.Errorf("plain readings rewrote rules_meters: seen %v, was %v", after, before)
			}
			e.flushSeen() // a graceful stop writes the latest of each
			r.step(e, 21*time.Minute+2*time.Second)
			if _, after = r.stored(); after["M0101"] != t0.Add(20*time.Minute).UnixNano() || after["M0102"] != t0.Add(20*time.Minute).UnixNano() {
				t.Errorf("after a graceful stop rules_meters holds seen %v, want both at 20 min", after)
			}
		})
	}
}

// TestLastSeenAfterRestart: a restart keeps every last-seen time older than
// the last sweep (seenFlushEvery), and the verification of an outage that
// begins afterwards shows it; a newer one is the documented loss, shown as
// the older time the store held.
func TestLastSeenAfterRestart(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			r := newSeenRig(t, driver)
			a := r.open()
			r.step(a, 0, plainReading("M0101", 0), plainReading("M0102", 0))
			seenAt := 5 * time.Minute
			r.step(a, seenAt, plainReading("M0101", seenAt))
			lostAt := seenFlushEvery + 2*time.Minute
			r.step(a, seenFlushEvery+time.Minute) // idle tick: the sweep writes M0101's 5 min
			r.step(a, lostAt, plainReading("M0102", lostAt))
			// crash: a is dropped without another tick
			b := r.open()
			start := lostAt + time.Minute
			r.step(b, start, event.Event{Outage: &event.OMSOutage{OutageID: "O1", Kind: event.OutageFault,
				Status: event.StatusStarted, Areas: []string{"TA-01"}, Start: tptr(t0.Add(start)), UpdatedAt: t0.Add(start)}})
			v, ok := b.Verification("O1")
			if !ok {
				t.Fatal("no verification of O1")
			}
			last := map[string]time.Time{}
			for _, d := range v.Dark {
				if d.LastSeen != nil {
					last[d.Meter] = *d.LastSeen
				}
			}
			if got, want := last["M0101"], t0.Add(seenAt); !got.Equal(want) {
				t.Errorf("M0101 last seen after restart = %v, want %v (written by the sweep)", got, want)
			}
			if got, want := last["M0102"], t0; !got.Equal(want) {
				t.Errorf("M0102 last seen after restart = %v, want %v (its newer time, after the sweep, is the documented loss)", got, want)
			}
		})
	}
}

// TestJoinWritesLastSeen: a meter seen after an outage began, before the
// record held it, keeps that evidence across a crash: its customer was not
// told (seen powered since the outage began), and a restarted engine says
// so too, where a stale last-seen time would make the customer due an SMS.
func TestJoinWritesLastSeen(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			r := newSeenRig(t, driver)
			a := r.open()
			r.step(a, 0, plainReading("M0101", 0))
			r.step(a, time.Second)
			r.step(a, 2*time.Minute, plainReading("M0101", 2*time.Minute))
			start := time.Minute // the OMS says it began before that reading
			r.step(a, 3*time.Minute, event.Event{Outage: &event.OMSOutage{OutageID: "O1", Kind: event.OutageFault,
				Status: event.StatusStarted, Areas: []string{"TA-01"}, Start: tptr(t0.Add(start)), UpdatedAt: t0.Add(3 * time.Minute)}})
			for name, e := range map[string]*Engine{"before the crash": a, "after a restart": r.open()} {
				cs, _ := e.Customers("O1", "")
				for _, c := range cs {
					if c.Meter == "M0101" && c.Status != "powered" {
						t.Errorf("%s: M0101, seen 1 min after O1 began, has status %q, want powered", name, c.Status)
					}
				}
			}
		})
	}
}

// TestReadingLookupHandedBack: applying a reading tells its caller what the
// registry says of the meter (ingest tags InfluxDB with it instead of
// asking again): its area for a known meter, unknown otherwise.
func TestReadingLookupHandedBack(t *testing.T) {
	te := newTestEngine(t, Config{})
	known, unknown := plainReading("M0201", 0), plainReading("X9", 0)
	te.at(0, known, unknown)
	if r := known.Reading; r.Found != event.LookupKnown || r.Area != "TA-02" {
		t.Errorf("known meter M0201: Found %d, Area %q; want known in TA-02", r.Found, r.Area)
	}
	if r := unknown.Reading; r.Found != event.LookupUnknown || r.Area != "" {
		t.Errorf("meter X9, not in the registry: Found %d, Area %q; want unknown, no area", r.Found, r.Area)
	}
}
