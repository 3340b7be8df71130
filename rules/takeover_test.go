package rules

import (
	"context"
	"errors"
	"fmt"
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

// newFencedRig is a seenRig on PostgreSQL with distributed mode's tables.
func newFencedRig(t *testing.T) *seenRig {
	r := newSeenRig(t, "postgres")
	if err := cluster.Migrate(context.Background(), r.db); err != nil {
		t.Fatal(err)
	}
	return r
}

// takeLease gives the cluster-rules lease to name, whoever held it (its
// lease lapsed: it crashed or stalled).
func (r *seenRig) takeLease(name string) {
	r.t.Helper()
	if _, err := r.db.Exec(`DELETE FROM store_leases WHERE name = $1`, cluster.RulesLease); err != nil {
		r.t.Fatal(err)
	}
	if _, err := store.AcquireLease(context.Background(), r.db, cluster.RulesLease, name, time.Minute); err != nil {
		r.t.Fatal(err)
	}
}

// holder makes an engine run the rules under the cluster-rules lease taken
// for name, as lead does in distributed mode.
func (r *seenRig) holder(name, topic string) *Engine {
	r.t.Helper()
	if _, err := store.AcquireLease(context.Background(), r.db, cluster.RulesLease, name, time.Minute); err != nil {
		r.t.Fatal(err)
	}
	e := r.open()
	e.SetFence(cluster.Fence(topic, name))
	return e
}

// run runs e until the test ends; the channel gets what Run returned.
func (r *seenRig) run(e *Engine) <-chan error {
	ctx, stop := context.WithCancel(context.Background())
	r.t.Cleanup(stop)
	ran := make(chan error, 1)
	go func() { ran <- e.Run(ctx) }()
	return ran
}

// wantFenced fails unless Run, whose result ran gets, returned the fence's
// refusal within 10 s of what.
func wantFenced(t *testing.T, ran <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ran:
		if !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("Run after a fenced %s = %v, want the fence's refusal", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Run goes on after a fenced %s", what)
	}
}

// TestTakeoverKeepsReadingEffects: in distributed mode, the meter-topic
// offsets of a batch of plain readings (which writes nothing of its own)
// are stored with the readings' effects: the meters' first sign of power
// and newest event time. A takeover right after it reads the input from
// those offsets, and a late power_off stamped before the readings changes
// nothing there, as it changed nothing in the former holder: no outage.
func TestTakeoverKeepsReadingEffects(t *testing.T) {
	r := newFencedRig(t)
	ctx := context.Background()
	const topic = "meter-events"
	a := r.holder("a", topic)
	r.stepAt(a, 5*time.Minute, map[int32]int64{0: 1}, plainReading("M0101", 5*time.Minute), plainReading("M0102", 5*time.Minute))
	r.step(a, 5*time.Minute+time.Second)
	if offs, err := cluster.Offsets(ctx, r.db, topic); err != nil || offs[0] != 1 {
		t.Fatalf("stored offsets = %v, %v; want partition 0 at 1", offs, err)
	}

	// a crashes; its lease lapses and b takes over from the stored offsets.
	r.takeLease("b")
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

// fencedHolder runs holder a on topic through one batch of plain readings
// (offset 1), lets b take the lease (a lapsed after a stall), and checks
// that a's next batch, a power_off of meter, is refused by the fence and
// stops a's Run. It returns a and the commits counted before the takeover.
func (r *seenRig) fencedHolder(topic, meter string) (*Engine, int64) {
	t := r.t
	t.Helper()
	ctx := context.Background()
	a := r.holder("a", topic)
	ran := r.run(a)
	if err := a.HandleAt(ctx, []event.Event{plainReading("M0101", time.Minute)}, map[int32]int64{0: 1}); err != nil {
		t.Fatal(err)
	}
	before, err := cluster.Commits(ctx, r.db)
	if err != nil || before == 0 {
		t.Fatalf("commits after the first batch = %d, %v; want some", before, err)
	}
	r.takeLease("b")
	late := event.Event{Meter: &event.MeterEvent{Meter: meter, Concentrator: "C-01", TS: t0.Add(2 * time.Minute), Type: event.PowerOff}}
	if err := a.HandleAt(ctx, []event.Event{late}, map[int32]int64{0: 2}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a batch after the takeover = %v, want the fence's refusal (ErrLeaseLost)", err)
	}
	wantFenced(t, ran, "commit")
	return a, before
}

// TestFencedCommitStopsRules: a holder whose lease another instance took
// has its next commit refused by the fence; the engine then stops (Run
// returns the refusal) instead of reloading its state and going on, and
// writes nothing: the store's commit count does not move.
func TestFencedCommitStopsRules(t *testing.T) {
	r := newFencedRig(t)
	ctx := context.Background()
	const topic = "meter-events"
	a, before := r.fencedHolder(topic, "M0102")
	if err := a.HandleAt(ctx, []event.Event{plainReading("M0101", 3*time.Minute)}, map[int32]int64{0: 3}); err == nil {
		t.Error("a batch after the engine stopped was accepted")
	}
	if after, _ := cluster.Commits(ctx, r.db); after != before {
		t.Errorf("commits went from %d to %d after the takeover, want none", before, after)
	}
	if offs, _ := cluster.Offsets(ctx, r.db, topic); offs[0] != 1 {
		t.Errorf("stored offset = %d after the takeover, want 1 (the fenced holder's)", offs[0])
	}
}

// TestPruneFenced: pruning is a commit like any other: a former holder
// whose lease another instance took deletes no outage record.
func TestPruneFenced(t *testing.T) {
	r := newFencedRig(t)
	ctx := context.Background()
	a := r.holder("a", "meter-events")
	ran := r.run(a)
	r.clk.Set(t0.Add(2 * time.Minute))
	for i, evs := range [][]event.Event{
		{omsEv("OMS-P", event.StatusStarted, []string{"TA-04"}, nil, 0)},
		meters(event.PowerOn, time.Minute, "M0401", "M0402", "M0403", "M0404"),
		{omsEv("OMS-P", event.StatusRestored, []string{"TA-04"}, nil, time.Minute)},
	} {
		if err := a.HandleAt(ctx, evs, map[int32]int64{0: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n int) {
		r.db.QueryRow(`SELECT COUNT(*) FROM rules_outages WHERE id = 'OMS-P'`).Scan(&n)
		return n
	}
	if o, _ := a.Outage("OMS-P"); o.Status != statusRestored || count() != 1 {
		t.Fatalf("OMS-P is %q with %d rows, want restored and stored", o.Status, count())
	}
	r.takeLease("b")
	if _, err := a.Prune(ctx, t0.Add(24*time.Hour), 100); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("prune after the takeover = %v, want the fence's refusal", err)
	}
	if n := count(); n != 1 {
		t.Errorf("a former holder's prune deleted OMS-P (%d rows left), want it kept", n)
	}
	wantFenced(t, ran, "prune")
}

// TestCheckpointStoresNoOffsetsAheadOfHeld: in distributed mode, an idle
// tick that only checkpoints logged meters does not store the offsets of
// plain readings whose effects are still held in memory (it writes them
// both, or neither): right after the readings it writes neither, and once
// the offsets have waited offsetEvery it writes both. Whatever the store
// holds after it, an instance taking over from it finds every reading
// before the stored offsets applied.
func TestCheckpointStoresNoOffsetsAheadOfHeld(t *testing.T) {
	for _, c := range []struct {
		wait time.Duration // before the idle tick
		want int64         // the offset it must store; 0: 1 or 2
	}{{0, 0}, {offsetEvery + 100*time.Millisecond, 2}} {
		t.Run(fmt.Sprintf("after %s", c.wait), func(t *testing.T) {
			r := newFencedRig(t)
			const topic = "meter-events"
			a := r.holder("a", topic)
			// the first commit stores offsets and logs both meters' first
			// sign of power: the next idle tick has them to checkpoint
			r.stepAt(a, 5*time.Minute, map[int32]int64{0: 1}, plainReading("M0101", 5*time.Minute), plainReading("M0102", 5*time.Minute))
			r.stepAt(a, 5*time.Minute+time.Second, map[int32]int64{0: 2}, plainReading("M0103", 5*time.Minute+time.Second))
			time.Sleep(c.wait)
			r.step(a, 5*time.Minute+2*time.Second) // checkpoint
			if _, checkpointed := r.stored(); checkpointed["M0101"] == 0 {
				t.Fatalf("the idle tick checkpointed %v, want M0101 among them", checkpointed)
			}
			offs, err := cluster.Offsets(context.Background(), r.db, topic)
			if err != nil {
				t.Fatal(err)
			}
			r.takeLease("b")
			b := r.holder("b", topic)
			switch ms := b.MetersOf("A0103"); {
			case offs[0] < 1 || offs[0] > 2 || c.want != 0 && offs[0] != c.want:
				t.Fatalf("stored offsets = %v, want partition 0 at %d (0: 1 or 2)", offs, c.want)
			case offs[0] == 2 && (len(ms) != 1 || ms[0].LastSeen == nil):
				t.Errorf("offset 2 stored but M0103, read before it, taken over = %+v, want seen", ms)
			}
		})
	}
}

// TestDemoteAfterFence: a holder fenced out after a takeover becomes a
// copy again (Demote): it forgets what it applied and could not commit,
// holding what the store holds, and runs the rules again, under a new
// fence, once its instance takes the lease back.
func TestDemoteAfterFence(t *testing.T) {
	r := newFencedRig(t)
	ctx := context.Background()
	const topic = "meter-events"
	a, _ := r.fencedHolder(topic, "M0101")
	if ms := a.MetersOf("A0101"); len(ms) != 1 || ms[0].Powered {
		t.Fatalf("M0101 in the fenced holder's memory = %+v, want the uncommitted power_off applied", ms)
	}
	loads := a.FullLoads()
	if err := a.Demote(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.FullLoads(); got != loads+1 {
		t.Errorf("Demote made %d full loads, want 1", got-loads)
	}
	if ms := a.MetersOf("A0101"); len(ms) != 1 || !ms[0].Powered {
		t.Errorf("M0101 after Demote = %+v, want powered, as the store holds it", ms)
	}
	// b stops; a takes the lease again and runs the rules.
	r.takeLease("a")
	a.SetFence(cluster.Fence(topic, "a"))
	r.run(a)
	before, _ := cluster.Commits(ctx, r.db)
	off := event.Event{Meter: &event.MeterEvent{Meter: "M0101", Concentrator: "C-01", TS: t0.Add(3 * time.Minute), Type: event.PowerOff}}
	if err := a.HandleAt(ctx, []event.Event{off}, map[int32]int64{0: 3}); err != nil {
		t.Fatalf("a batch after a took the lease again: %v", err)
	}
	if after, _ := cluster.Commits(ctx, r.db); after <= before {
		t.Errorf("commits %d → %d after a took the lease again, want more", before, after)
	}
}
