package notify

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// execer is a *sql.Tx or *sql.DB.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// claim takes up to limit due messages, most urgent first, applies quiet
// hours and the per-phone rate limit, and marks the rest "sending".
func (o *Outbox) claim(ctx context.Context, limit int) ([]claimed, error) {
	now := o.clk.Now()
	tx, err := o.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot claim messages: %w", err)
	}
	defer tx.Rollback()
	due, err := dueMessages(ctx, tx, now, limit)
	if err != nil {
		return nil, err
	}
	var out []claimed
	perPhone := map[string]int{}
	for _, c := range due {
		held, reason, until, err := o.hold(ctx, tx, c, now, perPhone)
		if err != nil {
			return nil, err
		}
		if held {
			if _, err := tx.ExecContext(ctx, `UPDATE notify_messages SET status = $1, reason = $2, due_at = $3, updated_at = $4
				WHERE id = $5`, StatusHeld, reason, until.UnixNano(), now.UnixNano(), c.ID); err != nil {
				return nil, fmt.Errorf("cannot hold message %s: %w", c.ID, err)
			}
			continue
		}
		out = append(out, c)
	}
	if err := markSending(ctx, tx, out, now); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("cannot commit claimed messages: %w", err)
	}
	return out, nil
}

// dueMessages reads up to limit due messages, most urgent first. Queued
// and held messages are read apart so that each read walks the
// (status, priority, due_at) index in order instead of sorting the queue.
func dueMessages(ctx context.Context, tx *cachedTx, now time.Time, limit int) ([]claimed, error) {
	var all []claimed
	for _, status := range []string{StatusQueued, StatusHeld} {
		rows, err := tx.QueryContext(ctx, `SELECT id, phone, accounts, kind, ref, body, queued_at, attempts, priority, due_at
			FROM notify_messages WHERE status = $1 AND due_at <= $2 ORDER BY priority, due_at LIMIT $3`,
			status, now.UnixNano(), limit)
		if err != nil {
			return nil, fmt.Errorf("cannot read due messages: %w", err)
		}
		for rows.Next() {
			var c claimed
			var kind string
			var queued int64
			if err := rows.Scan(&c.ID, &c.To, &c.Account, &kind, &c.Ref, &c.Body, &queued, &c.attempts, &c.priority, &c.due); err != nil {
				rows.Close()
				return nil, fmt.Errorf("cannot read due messages: %w", err)
			}
			c.Kind, c.QueuedAt = event.Kind(kind), time.Unix(0, queued)
			all = append(all, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("cannot read due messages: %w", err)
		}
	}
	slices.SortStableFunc(all, func(a, b claimed) int {
		if c := cmp.Compare(a.priority, b.priority); c != 0 {
			return c
		}
		return cmp.Compare(a.due, b.due)
	})
	return all[:min(limit, len(all))], nil
}

// hold applies quiet hours and the per-phone rate limit to c. perPhone
// counts what this claim already took per phone.
func (o *Outbox) hold(ctx context.Context, tx *cachedTx, c claimed, now time.Time, perPhone map[string]int) (bool, string, time.Time, error) {
	if until := o.qh.heldUntil(c.Kind, now); !until.IsZero() {
		return true, "quiet hours", until, nil
	}
	if safetyKinds[c.Kind] || o.cfg.PhoneHourly <= 0 {
		return false, "", time.Time{}, nil
	}
	var n int
	var oldest sql.NullInt64
	hourAgo := now.Add(-time.Hour).UnixNano()
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*), MIN(claimed_at) FROM notify_messages
		WHERE phone = $1 AND claimed_at > $2 AND kind NOT IN ($3, $4, $5, $6) AND status IN ($7, $8, $9, $10, $11)`,
		c.To, hourAgo, event.KindOutage, event.KindETRUpdate, event.KindRestored, event.KindBalanceExhausted,
		StatusSending, StatusSent, StatusDelivered, StatusUndelivered, StatusFailed).Scan(&n, &oldest)
	if err != nil {
		return false, "", time.Time{}, fmt.Errorf("cannot count messages to a phone: %w", err)
	}
	if n+perPhone[c.To] >= o.cfg.PhoneHourly {
		until := now.Add(time.Minute)
		if oldest.Valid {
			until = time.Unix(0, oldest.Int64).Add(time.Hour)
		}
		return true, "rate limit", until, nil
	}
	perPhone[c.To]++
	return false, "", time.Time{}, nil
}

func markSending(ctx context.Context, tx *cachedTx, cs []claimed, now time.Time) error {
	for start := 0; start < len(cs); start += 200 {
		chunk := cs[start:min(start+200, len(cs))]
		args := make([]any, 0, 2+len(chunk))
		args = append(args, StatusSending, now.UnixNano())
		for _, c := range chunk {
			args = append(args, c.ID)
		}
		q := `UPDATE notify_messages SET status = $1, reason = '', claimed_at = $2, updated_at = $2 WHERE id IN (` +
			store.Marks(true, 2, len(chunk)) + `)`
		if !tx.o.db.Postgres() {
			// "?" after ?2 is numbered 3, 4, …: binds without a lookup by name
			q = `UPDATE notify_messages SET status = ?1, reason = '', claimed_at = ?2, updated_at = ?2 WHERE id IN (` +
				store.Marks(false, 0, len(chunk)) + `)`
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("cannot mark messages sending: %w", err)
		}
	}
	return nil
}
