package rules

import (
	"context"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/cluster"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// stepAt applies evs, consumed from the meter topic up to offsets, at
// t0+d as one batch.
func (r *seenRig) stepAt(e *Engine, d time.Duration, offsets map[int32]int64, evs ...event.Event) {
	r.t.Helper()
	r.clk.Set(t0.Add(d))
	q := &request{evs: evs, offsets: offsets, done: make(chan error, 1)}
	e.process([]*request{q})
	if err := <-q.done; err != nil {
		r.t.Fatal(err)
	}
}

// holder makes an engine run the rules under the cluster-rules lease taken
// for name, as lead does in distributed mode.
func (r *seenRig) holder(name, topic string) *Engine {
	r.t.Helper()
	ctx := context.Background()
	if _, err := store.AcquireLease(ctx, r.db, cluster.RulesLease, name, time.Minute); err != nil {
		r.t.Fatal(err)
	}
	e := r.open()
	e.SetFence(cluster.Fence(topic, name))
	return e
}

// TestTakeoverKeepsReadingEffects: in distributed mode, the meter-topic
// offsets of a batch of plain readings (which writes nothing of its own)
// are stored with the readings' effects: the meters' first sign of power
// and newest event time. A takeover right after it reads the input from
// those offsets, and a late power_off stamped before the readings changes
// nothing there, as it changed nothing in the former holder: no outage.
func TestTakeoverKeepsReadingEffects(t *testing.T) {
	r := newSeenRig(t, "postgres")
	ctx := context.Background()
	if err := cluster.Migrate(ctx, r.db); err != nil {
		t.Fatal(err)
	}
	const topic = "meter-events"
	a := r.holder("a", topic)
	r.stepAt(a, 5*time.Minute, map[int32]int64{0: 1}, plainReading("M0101", 5*time.Minute), plainReading("M0102", 5*time.Minute))
	r.step(a, 5*time.Minute+time.Second)
	if offs, err := cluster.Offsets(ctx, r.db, topic); err != nil || offs[0] != 1 {
		t.Fatalf("stored offsets = %v, %v; want partition 0 at 1", offs, err)
	}

	// a crashes; its lease lapses and b takes over from the stored offsets.
	if _, err := r.db.Exec(`DELETE FROM store_leases WHERE name = $1`, cluster.RulesLease); err != nil {
		t.Fatal(err)
	}
	b := r.holder("b", topic)
	late := event.Event{Meter: &event.MeterEvent{Meter: "M0101", Concentrator: "C-01", TS: t0.Add(2 * time.Minute), Type: event.PowerOff}}
	r.stepAt(b, 5*time.Minute+2*time.Second, map[int32]int64{0: 2}, late)
	for d := 5*time.Minute + 10*time.Second; d <= 8*time.Minute; d += 10 * time.Second {
		r.step(b, d)
	}
	if out := readOutbox(t, r.db); len(out) > 0 {
		t.Errorf("a late power_off after the takeover sent %d SMS (first: %+v), want none", len(out), out[0])
	}
	if os := b.Outages(""); len(os) > 0 {
		t.Errorf("a late power_off after the takeover opened %d outages (first: %+v), want none", len(os), os[0])
	}
	if ms := b.MetersOf("A0101"); len(ms) != 1 || !ms[0].Powered {
		t.Errorf("M0101 after the takeover = %+v, want powered", ms)
	}
}
