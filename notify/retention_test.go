package notify

import (
	"context"
	"testing"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/notify/notifytest"
)

// TestPrune: finished messages, their links and expanded intents older
// than the cut go, in batches; younger ones and unsent ones stay.
func TestPrune(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		dir := notifytest.NewDirectory(
			notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"),
			notifytest.Resident("0100000002", "TA-0101", "zh", "+8613800000002"),
			notifytest.Resident("0100000003", "TA-0101", "zh", "+8613800000003"))
		h := newHarness(t, driver, dir, at(10, 0), nil)
		h.enqueue(intent("a", event.KindOutage, "0100000001", "R1", outageVars),
			intent("b", event.KindOutage, "0100000002", "R1", outageVars))
		h.run()
		h.clk.Set(at(12, 0))
		h.enqueue(intent("c", event.KindOutage, "0100000003", "R2", outageVars))
		h.run()
		rows := func() (n int) {
			h.o.db.QueryRow(`SELECT (SELECT COUNT(*) FROM notify_messages) + (SELECT COUNT(*) FROM notify_links) +
				(SELECT COUNT(*) FROM notify_intents)`).Scan(&n)
			return n
		}
		if got := rows(); got != 9 {
			t.Fatalf("rows before pruning = %d, want 9 (3 messages, links, intents)", got)
		}
		n, err := h.o.Prune(context.Background(), at(11, 0), 1)
		if err != nil {
			t.Fatal(err)
		}
		if n != 6 || rows() != 3 {
			t.Errorf("pruned %d rows, %d left; want 6 pruned (the 10:00 ones), 3 left", n, rows())
		}
		if n, _ := h.o.Prune(context.Background(), at(11, 0), 1); n != 0 {
			t.Errorf("a second prune took %d more rows", n)
		}
	})
}
