package rules

import (
	"context"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// copyRig is the rules (leader) and a copy on one PostgreSQL store, as two
// instances of distributed mode hold them.
type copyRig struct {
	*seenRig
	leader *Engine
	copy   *Engine
}

func newCopyRig(t *testing.T) *copyRig {
	r := &copyRig{seenRig: newSeenRig(t, "postgres")}
	r.leader, r.copy = r.open(), r.open()
	return r
}

// current refreshes the copy and checks it holds what a fresh load of the
// store holds, without having loaded it whole again.
func (r *copyRig) current(what string) {
	r.t.Helper()
	loads := r.copy.FullLoads()
	if err := r.copy.Refresh(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	if n := r.copy.FullLoads() - loads; n != 0 {
		r.t.Errorf("%s: the copy loaded its whole state %d times, want 0 (incremental)", what, n)
	}
	if got, want := dump(r.copy), dump(r.open()); got != want {
		r.t.Errorf("%s: the copy differs from the store:\n got %s\nwant %s", what, got, want)
	}
}

// TestCopyFollowsIncrementally: each commit of the rules reaches the copy
// by reading what changed, through outage records opened, widened, merged
// into the OMS's, restored and pruned, balances, and the meter log's
// checkpoint and trim.
func TestCopyFollowsIncrementally(t *testing.T) {
	r := newCopyRig(t)
	l := r.leader
	r.step(l, 0, append(meters(event.PowerOff, 0, "M0101", "M0102", "M0103", "M0104"),
		meterEv("M0304", event.RemoteTrip, 0), readingEv("M0301", 0, 12.5))...)
	r.current("last gasps pending")
	r.step(l, 61*time.Second)
	r.current("outage inferred")
	if v, ok := r.copy.Outage(r.copy.Outages("active")[0].ID); !ok || v.Counts.Dark == 0 {
		t.Errorf("copy's outage = %+v, want dark meters", v)
	}
	r.step(l, 62*time.Second, meters(event.PowerOff, 62*time.Second, "M0201", "M0202", "M0203", "M0204")...)
	r.step(l, 125*time.Second)
	r.current("a second area dark")
	r.step(l, 130*time.Second, omsEv("O1", "started", []string{"TA-01", "TA-02"}, nil, 130*time.Second))
	r.current("the OMS's record absorbs the AMI ones")
	r.step(l, 131*time.Second)
	r.step(l, 132*time.Second) // checkpoints everything, trims the log
	if n, _ := r.stored(); n != 0 {
		t.Fatalf("meter log rows after a checkpoint = %d, want 0", n)
	}
	r.current("log checkpointed and trimmed")
	r.step(l, time.Hour, meters(event.PowerOn, time.Hour, "M0101", "M0102", "M0103", "M0104", "M0201", "M0202", "M0203", "M0204")...)
	r.step(l, time.Hour+time.Second, omsEv("O1", "restored", []string{"TA-01", "TA-02"}, nil, time.Hour+time.Second))
	r.step(l, time.Hour+2*time.Minute)
	r.current("restored")
	if got := r.copy.Outages("active"); len(got) != 0 {
		t.Errorf("copy's active outages after the restoration = %+v, want none", got)
	}
	r.step(l, 2*time.Hour, meters(event.PowerOff, 2*time.Hour, "M0401", "M0402", "M0403", "M0404")...)
	r.step(l, 2*time.Hour+61*time.Second)
	n, err := l.prune(context.Background(), t0.Add(90*time.Minute), 100)
	if err != nil || n == 0 {
		t.Fatalf("prune = %d, %v; want the restored record gone", n, err)
	}
	r.current("restored record pruned, a new outage")
	if got := r.copy.Outages("active"); len(got) != 1 {
		t.Errorf("copy's active outages = %d, want 1", len(got))
	}
}

// TestCopyStalledCatchesUp: a copy that stopped refreshing while the rules
// went on (its meter log rows checkpointed and trimmed meanwhile, its
// outage restored, a new one opened) is current after one refresh: not
// the stale outage, and the new one known.
func TestCopyStalledCatchesUp(t *testing.T) {
	r := newCopyRig(t)
	l := r.leader
	r.step(l, 0, meters(event.PowerOff, 0, "M0101", "M0102", "M0103", "M0104")...)
	r.step(l, 61*time.Second)
	r.current("outage inferred")
	old := r.copy.Outages("active")
	if len(old) != 1 {
		t.Fatalf("copy's active outages = %d, want 1", len(old))
	}
	// the copy stalls
	r.step(l, time.Hour, meters(event.PowerOn, time.Hour, "M0101", "M0102", "M0103", "M0104")...)
	r.step(l, time.Hour+time.Minute)
	r.step(l, 2*time.Hour, meters(event.PowerOff, 2*time.Hour, "M0301", "M0302", "M0303", "M0304")...)
	r.step(l, 2*time.Hour+61*time.Second)
	r.step(l, 2*time.Hour+62*time.Second)
	r.step(l, 2*time.Hour+63*time.Second)
	if n, _ := r.stored(); n != 0 {
		t.Fatalf("meter log rows = %d, want all trimmed", n)
	}
	r.current("after the stall")
	if v, ok := r.copy.Outage(old[0].ID); !ok || v.Status != statusRestored || v.Counts.Dark != 0 {
		t.Errorf("copy's former outage = %+v (%v), want restored with no meter dark", v, ok)
	}
	now := r.copy.Outages("active")
	if len(now) != 1 || now[0].ID == old[0].ID {
		t.Fatalf("copy's active outages = %+v, want the new one", now)
	}
	if _, ok := r.copy.Outage(now[0].ID); !ok {
		t.Errorf("copy does not know the outage opened while it stalled")
	}
}

// TestCopyTakesOverWarm: a copy takes over the rules with one refresh, no
// full load, and takes the decisions the former holder left pending.
func TestCopyTakesOverWarm(t *testing.T) {
	r := newCopyRig(t)
	r.step(r.leader, 0, meterEv("M0201", event.PowerOff, 0), meterEv("M0202", event.PowerOff, 0), meterEv("M0203", event.PowerOff, 0))
	r.current("last gasps pending")
	// the leader dies; the copy takes over
	c := r.copy
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	r.clk.Set(t0.Add(61 * time.Second))
	if err := c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := c.FullLoads(); n != 1 {
		t.Errorf("the copy loaded its whole state %d times, want once (at start)", n)
	}
	kinds := map[string]int{}
	for _, s := range readOutbox(t, r.db) {
		kinds[s.Kind+":"+s.Account]++
	}
	for _, a := range []string{"A0201", "A0202", "A0203"} {
		if kinds["outage:"+a] != 1 {
			t.Errorf("outage intents for %s = %d, want 1 (outbox %v)", a, kinds["outage:"+a], kinds)
		}
	}
	if got, want := dump(c), dump(r.open()); got != want {
		t.Errorf("the successor's state differs from the store:\n got %s\nwant %s", got, want)
	}
}
