package care

import (
	"context"
	"fmt"
	"time"
)

// Retention (care.history): closed interruptions and calls older than the
// history go, pruneBatch rows a statement with a pause between, off the
// hot path, every pruneEvery while this instance projects.
const (
	pruneEvery = 10 * time.Minute
	pruneBatch = 1000
	prunePause = 50 * time.Millisecond
)

// Prune drops the closed interruptions that began, and the calls made,
// before before, in steps, and reports how many rows went.
func (c *Care) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	cut := before.UnixNano()
	for _, st := range []struct {
		q   string
		cut int64
	}{
		{`DELETE FROM care_interruptions WHERE (outage, account) IN (
			SELECT outage, account FROM care_interruptions WHERE start_ns < $1 AND end_ns <> 0 LIMIT $2)`, cut},
		{`DELETE FROM care_calls WHERE (account, at_ns) IN (
			SELECT account, at_ns FROM care_calls WHERE at_ns < $1 LIMIT $2)`, cut},
		{`DELETE FROM care_followups WHERE (outage, grid) IN (
			SELECT outage, grid FROM care_followups WHERE at_ns < $1 LIMIT $2)`, cut},
		// Whole days before the cut-off's day: their rows are gone.
		{`DELETE FROM care_daily WHERE (day, grid, feeder, area, planned) IN (
			SELECT day, grid, feeder, area, planned FROM care_daily WHERE day < $1 LIMIT $2)`, dayOf(cut)},
		{`DELETE FROM care_daily_feeder WHERE (day, grid, feeder, planned) IN (
			SELECT day, grid, feeder, planned FROM care_daily_feeder WHERE day < $1 LIMIT $2)`, dayOf(cut)},
	} {
		for {
			res, err := c.db.ExecContext(ctx, st.q, st.cut, pruneBatch)
			if err != nil {
				return total, fmt.Errorf("cannot prune care history: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, fmt.Errorf("cannot prune care history: %w", err)
			}
			total += n
			metricPruned.Add(float64(n))
			if n < pruneBatch {
				break
			}
			sleep(ctx, prunePause)
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
		}
	}
	return total, nil
}
