package notify

import (
	"context"
	"fmt"

	"github.com/gridbell/gridbell/internal/store"
)

// FirstSent reports, for each ref and each account with a message under it
// sent or delivered, when the first of them was sent (Unix ns): when an
// outage's SMS first reached the customer, for customer care's "did the
// SMS beat the call".
func (o *Outbox) FirstSent(ctx context.Context, refs []string) (map[string]map[string]int64, error) {
	out := map[string]map[string]int64{}
	if len(refs) == 0 {
		return out, nil
	}
	args := []any{StatusSent, StatusDelivered}
	for _, r := range refs {
		args = append(args, r)
	}
	rows, err := o.db.QueryContext(ctx, `SELECT l.ref, l.account, MIN(m.sent_at) FROM notify_links l
		JOIN notify_messages m ON m.id = l.message_id
		WHERE l.ref IN (`+store.Marks(true, 2, len(refs))+`) AND l.account <> '' AND m.sent_at > 0 AND m.status IN ($1, $2)
		GROUP BY l.ref, l.account`, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read when sms were sent: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ref, a string
		var at int64
		if err := rows.Scan(&ref, &a, &at); err != nil {
			return nil, fmt.Errorf("cannot read when sms were sent: %w", err)
		}
		if out[ref] == nil {
			out[ref] = map[string]int64{}
		}
		out[ref][a] = at
	}
	return out, rows.Err()
}
