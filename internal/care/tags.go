package care

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// Tags (docs/interfaces.md §9).
const (
	TagFrequentOutage = "frequent_outage"
	TagComplaintRisk  = "complaint_risk"
	TagPaymentRisk    = "payment_risk"
	TagUnreachable    = "unreachable"
)

// complaintCalls is how many of a customer's outages within callWindow
// it called about before it counts as a complaint risk.
const (
	complaintCalls = 2
	callWindow     = 90 * Day
)

// bulkFacts are the outage-history facts of many customers at once: their
// sustained interruptions within the frequent-outage window, and the
// outages they called about within callWindow.
type bulkFacts struct {
	sustained map[string]int
	called    map[string]int
}

// bulk reads bulkFacts of accounts, 500 a query.
func (c *Care) bulk(ctx context.Context, accounts []string) (bulkFacts, error) {
	f := bulkFacts{sustained: map[string]int{}, called: map[string]int{}}
	now := c.clk.Now()
	since := now.Add(-time.Duration(c.cfg.FrequentOutage.Within)).UnixNano()
	calls := now.Add(-callWindow).UnixNano()
	for chunk := range slices.Chunk(accounts, 500) {
		args := []any{since, now.UnixNano(), int64(c.cfg.SustainedAfter)}
		for _, a := range chunk {
			args = append(args, a)
		}
		list := store.Marks(true, 3, len(chunk))
		if err := countBy(ctx, c.db, `SELECT account, COUNT(*) FROM care_interruptions
			WHERE account IN (`+list+`) AND start_ns >= $1
			AND (CASE WHEN end_ns = 0 THEN $2 ELSE end_ns END) - start_ns >= $3 GROUP BY account`, args, f.sustained); err != nil {
			return f, err
		}
		args = append([]any{calls}, args[3:]...)
		if err := countBy(ctx, c.db, `SELECT account, COUNT(DISTINCT outage) FROM care_calls
			WHERE account IN (`+store.Marks(true, 1, len(chunk))+`) AND at_ns >= $1 AND outage <> '' GROUP BY account`, args, f.called); err != nil {
			return f, err
		}
	}
	return f, nil
}

func countBy(ctx context.Context, db *store.DB, q string, args []any, into map[string]int) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("cannot read customer history: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return fmt.Errorf("cannot read customer history: %w", err)
		}
		into[k] = n
	}
	return rows.Err()
}

// tagsOf are the history tags of one account of f.
func (c *Care) tagsOf(f bulkFacts, account string) []string {
	var tags []string
	freq := f.sustained[account] >= c.cfg.FrequentOutage.Count
	if freq {
		tags = append(tags, TagFrequentOutage)
	}
	if freq || f.called[account] >= complaintCalls {
		tags = append(tags, TagComplaintRisk)
	}
	return tags
}

// Tags answers frequent_outage and complaint_risk for many accounts at
// once (lists and CSV exports); Profile has all four for one.
func (c *Care) Tags(ctx context.Context, accounts []string) (map[string][]string, error) {
	f, err := c.bulk(ctx, accounts)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(accounts))
	for _, a := range accounts {
		if t := c.tagsOf(f, a); len(t) > 0 {
			out[a] = t
		}
	}
	return out, nil
}
