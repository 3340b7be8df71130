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
	if err := o.lockPhones(ctx, tx, due); err != nil {
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
	if err := o.markSending(ctx, tx, out, now); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("cannot commit claimed messages: %w", err)
	}
	return out, nil
}

// lockPhones serialises, on PostgreSQL, the claims of instances sharing the
// outbox for the phones whose hourly limit this claim counts: each takes a
// transaction lock per phone (in one order, so two claims cannot deadlock)
// before counting, and the second counts after the first has committed its
// claims. Safety kinds are not limited and lock nothing.
func (o *Outbox) lockPhones(ctx context.Context, tx *cachedTx, due []claimed) error {
	if !o.db.Postgres() || o.cfg.PhoneHourly <= 0 {
		return nil
	}
	var phones []string
	for _, c := range due {
		if !safetyKinds[c.Kind] {
			phones = append(phones, c.To)
		}
	}
	slices.Sort(phones)
	for _, p := range slices.Compact(phones) {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('gridbell-phone:' || $1))`, p); err != nil {
			return fmt.Errorf("cannot lock phone for its hourly limit: %w", err)
		}
	}
	return nil
}

// dueMessages reads up to limit due messages, most urgent first. Queued
// and held messages are read apart so that each read walks the
// (status, priority, due_at) index in order instead of sorting the queue.
func dueMessages(ctx context.Context, tx *cachedTx, now time.Time, limit int) ([]claimed, error) {
	var all []claimed
	for _, status := range []string{StatusQueued, StatusHeld} {
		q := `SELECT id, phone, accounts, kind, ref, body, queued_at, attempts, priority, due_at
			FROM notify_messages WHERE status = $1 AND due_at <= $2 ORDER BY priority, due_at LIMIT $3`
		if tx.o.db.Postgres() {
			// Instances sharing the outbox each claim other messages: rows
			// another claim has locked are passed over, not waited for
			// and then sent a second time.
			q += ` FOR UPDATE SKIP LOCKED`
		}
		rows, err := tx.QueryContext(ctx, q, status, now.UnixNano(), limit)
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

// markSending marks cs sending under one new claim of this instance: a
// token (instance, process and claim number) that the sends and records of
// cs must still find on their rows (fence, record), and a lease on the
// store's clock. The dispatcher renews the lease while it runs
// (keepLeases, fence), and another instance takes the messages back once
// it lapses.
func (o *Outbox) markSending(ctx context.Context, tx *cachedTx, cs []claimed, now time.Time) error {
	if len(cs) == 0 {
		return nil
	}
	token := fmt.Sprintf("%s#%s.%d", o.instance, o.nonce, o.claims.Add(1))
	for i := range cs {
		cs[i].token = token
	}
	for start := 0; start < len(cs); start += 200 {
		chunk := cs[start:min(start+200, len(cs))]
		args := make([]any, 0, 5+len(chunk))
		args = append(args, StatusSending, now.UnixNano(), o.instance, token, int64(o.lease))
		for _, c := range chunk {
			args = append(args, c.ID)
		}
		q := `UPDATE notify_messages SET status = $1, reason = '', claimed_at = $2, updated_at = $2, claimed_by = $3,
			claim_token = $4, lease_until = ` + o.db.NowSQL() + ` + $5 WHERE id IN (` + store.Marks(true, 5, len(chunk)) + `)`
		if !tx.o.db.Postgres() {
			// "?" after ?5 is numbered 6, 7, …: binds without a lookup by name
			q = `UPDATE notify_messages SET status = ?1, reason = '', claimed_at = ?2, updated_at = ?2, claimed_by = ?3,
				claim_token = ?4, lease_until = ` + o.db.NowSQL() + ` + ?5 WHERE id IN (` + store.Marks(false, 0, len(chunk)) + `)`
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("cannot mark messages sending: %w", err)
		}
	}
	return nil
}

// keepLeases renews the leases of the messages this instance is sending
// and queues again those whose holder let its lease lapse: an instance that
// died, stood still (a long pause, a frozen host) or lost the store for
// longer than a lease. Leases are judged on the store's clock alone. Those may have reached
// the provider before the holder died, so they are counted (status
// "reclaimed") and logged.
func (o *Outbox) keepLeases(ctx context.Context) error {
	now := o.db.NowSQL()
	// Only a live lease is renewed: one that lapsed (this process stood
	// still past it) may be another instance's by now, and its messages
	// are checked before they are sent (fence).
	if _, err := o.db.ExecContext(ctx, `UPDATE notify_messages SET lease_until = `+now+` + $1
		WHERE status = $2 AND claimed_by = $3 AND lease_until > `+now, int64(o.lease), StatusSending, o.instance); err != nil {
		return fmt.Errorf("cannot renew message leases: %w", err)
	}
	n, err := o.requeue(ctx, `claimed_by <> $5 AND lease_until < `+now, "lease lapsed; reclaimed from ", o.instance)
	if err != nil {
		return fmt.Errorf("cannot reclaim messages: %w", err)
	}
	if n > 0 {
		o.log.Warn().Int("messages", n).Msg("reclaimed messages whose sender's lease lapsed; each is looked up at the provider before it is sent again")
	}
	return nil
}

// requeue queues again the sending messages that match where (its
// arguments from $5), with reason prefix followed by the former holder, and
// counts them by kind with status "reclaimed". Their holder may have handed
// them to the provider before it stopped: each counts as an attempt whose
// outcome is unknown, so a sender that can look a message up (Twilio) does
// so before sending it again (Message.Attempts), instead of sending it twice.
func (o *Outbox) requeue(ctx context.Context, where, prefix string, args ...any) (int, error) {
	q := `UPDATE notify_messages SET status = $1, reason = $2 || claimed_by, claimed_by = '', claim_token = '', lease_until = 0,
		attempts = attempts + 1, updated_at = $3 WHERE status = $4 AND ` + where + ` RETURNING kind`
	if o.db.Postgres() {
		// Rows a frozen instance's open transaction holds locked (it was
		// recording them, or checking their claims) are passed over, not
		// waited for: this dispatcher must not stand still with it.
		q = `UPDATE notify_messages SET status = $1, reason = $2 || claimed_by, claimed_by = '', claim_token = '', lease_until = 0,
			attempts = attempts + 1, updated_at = $3 WHERE id IN (
			SELECT id FROM notify_messages WHERE status = $4 AND ` + where + ` FOR UPDATE SKIP LOCKED) RETURNING kind`
	}
	all := append([]any{StatusQueued, prefix, o.clk.Now().UnixNano(), StatusSending}, args...)
	rows, err := o.db.QueryContext(ctx, q, all...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var kind string
		if err := rows.Scan(&kind); err != nil {
			return n, err
		}
		count(kind, "reclaimed")
		n++
	}
	return n, rows.Err()
}
