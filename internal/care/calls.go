package care

import (
	"context"
	"fmt"
	"time"
)

// RecordCall notes a hotline lookup of account at at; outage is the outage
// the customer was in, "" for none. A lookup that finds a customer in an
// outage counts as that customer's call (docs/interfaces.md §9). Two
// lookups of one customer in the same nanosecond count once.
func (c *Care) RecordCall(ctx context.Context, account, outage string, at time.Time) error {
	_, err := c.db.ExecContext(ctx, `INSERT INTO care_calls (account, at_ns, outage) VALUES ($1, $2, $3)
		ON CONFLICT (account, at_ns) DO NOTHING`, account, at.UnixNano(), outage)
	if err != nil {
		return fmt.Errorf("cannot record a hotline call: %w", err)
	}
	if outage == "" {
		return nil
	}
	var sms int64
	err = c.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(sms_ns), 0) FROM care_interruptions WHERE outage = $1 AND account = $2`,
		outage, account).Scan(&sms)
	if err == nil {
		if sms > 0 && sms <= at.UnixNano() {
			metricCalls.WithLabelValues("after_sms").Inc()
		} else {
			metricCalls.WithLabelValues("before_sms").Inc()
		}
	}
	return nil
}
