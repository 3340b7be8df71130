package notify

import (
	"context"
	"fmt"
)

// analyzeAfter is how many intents, unpacked or expanded, an instance
// writes in bulk before it refreshes PostgreSQL's statistics of the outbox
// tables (analyzeAfterBulk). A variable so tests can lower it.
var analyzeAfter int64 = 20000

// analyzeAfterBulk counts n intents written in bulk and, on PostgreSQL,
// once analyzeAfter have been, analyzes the outbox tables. A storm grows
// them from nothing to millions of rows in minutes, faster than
// autovacuum's analyze follows: with a planner that still sees the empty
// tables of the morning, each expansion step of a 2M-customer storm took
// 1.1 s (sequential scans where an index lookup was meant). ANALYZE reads a
// sample, a fraction of a second at millions of rows, and takes no lock
// that writers wait on.
func (o *Outbox) analyzeAfterBulk(ctx context.Context, n int) error {
	if !o.db.Postgres() || n <= 0 {
		return nil
	}
	if o.written.Add(int64(n)) < analyzeAfter {
		return nil
	}
	o.written.Store(0)
	if _, err := o.db.ExecContext(ctx, `ANALYZE notify_intents, notify_messages, notify_links`); err != nil {
		return fmt.Errorf("cannot refresh the outbox tables' statistics: %w", err)
	}
	return nil
}
