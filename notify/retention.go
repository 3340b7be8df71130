package notify

import (
	"context"
	"fmt"
	"time"
)

// Prune deletes, batch rows a statement, what the outbox no longer needs
// once older than before: finished messages (sent, delivered, undelivered,
// failed, suppressed, rejected) with their links and receipts, expanded
// intents and webhook keys. Small batches keep it off the hot path. It
// returns how many rows went.
func (o *Outbox) Prune(ctx context.Context, before time.Time, batch int) (int64, error) {
	cut := before.UnixNano()
	stmts := []struct {
		what string
		q    string
		args []any
	}{
		{"messages", `DELETE FROM notify_messages WHERE id IN (SELECT id FROM notify_messages
			WHERE status IN ($1, $2, $3, $4, $5, $6) AND updated_at < $7 LIMIT $8)`,
			[]any{StatusSent, StatusDelivered, StatusUndelivered, StatusFailed, StatusSuppressed, StatusRejected, cut, batch}},
		{"links", `DELETE FROM notify_links WHERE (intent_key, phone) IN (SELECT l.intent_key, l.phone FROM notify_links l
			WHERE l.created_at < $1 AND NOT EXISTS (SELECT 1 FROM notify_messages m WHERE m.id = l.message_id) LIMIT $2)`,
			[]any{cut, batch}},
		{"intents", `DELETE FROM notify_intents WHERE key IN (SELECT key FROM notify_intents
			WHERE state = 'done' AND enqueued_at < $1 LIMIT $2)`, []any{cut, batch}},
		{"receipts", `DELETE FROM notify_receipts WHERE provider_id IN (SELECT provider_id FROM notify_receipts
			WHERE at < $1 LIMIT $2)`, []any{cut, batch}},
		{"webhooks", `DELETE FROM notify_webhooks WHERE key IN (SELECT key FROM notify_webhooks
			WHERE at < $1 LIMIT $2)`, []any{cut, batch}},
	}
	var total int64
	for _, s := range stmts {
		for {
			res, err := o.db.ExecContext(ctx, s.q, s.args...)
			if err != nil {
				return total, fmt.Errorf("cannot prune old %s: %w", s.what, err)
			}
			n, _ := res.RowsAffected()
			total += n
			if n < int64(batch) {
				break
			}
			if err := pause(ctx); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// pause lets the writers in between two pruning batches.
func pause(ctx context.Context) error {
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
