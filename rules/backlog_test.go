package rules

import (
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// TestBacklogGaspsStillDecide: a last gasp's age is taken when it reached
// gridbell, not when the rules applied it. Gasps that waited in gridbell
// (the meter topic while the rules caught up after a takeover, a
// province's million) open their outage and tell their customers however
// late they are applied; gasps that were already old when they arrived (a
// replay, a head-end's backlog) darken their meters and decide nothing, as
// do gasps whose arrival is not known and that are old when applied.
func TestBacklogGaspsStillDecide(t *testing.T) {
	const m = time.Minute
	for _, c := range []struct {
		name     string
		arrived  time.Duration // after t0; 0: not known
		outage   bool
		outboxed int
	}{
		{"queued in gridbell, applied 9 minutes later", m + time.Second, true, 4},
		{"already old when it arrived", 10 * m, false, 0},
		{"arrival not known, old when applied", 0, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newSeenRig(t, "sqlite")
			e := r.open()
			evs := meters(event.PowerOff, m, "M0401", "M0402", "M0403", "M0404")
			for i := range evs {
				if c.arrived != 0 {
					evs[i].Received = t0.Add(c.arrived)
				}
			}
			r.step(e, 10*m, evs...) // applied 9 minutes after the gasps: past Reorder (5 min)
			for d := 10*m + 10*time.Second; d <= 13*m; d += 10 * time.Second {
				r.step(e, d)
			}
			if got := len(e.Outages("")) > 0; got != c.outage {
				t.Errorf("an outage opened: %v, want %v", got, c.outage)
			}
			n := 0
			for _, s := range readOutbox(t, r.db) {
				if s.Kind == string(event.KindOutage) {
					n++
				}
			}
			if n != c.outboxed {
				t.Errorf("%d outage intents, want %d", n, c.outboxed)
			}
			if ms := e.MetersOf("A0401"); len(ms) != 1 || ms[0].Powered {
				t.Errorf("M0401 = %+v, want dark whatever was decided", ms)
			}
		})
	}
}
