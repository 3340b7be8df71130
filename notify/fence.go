package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// errNotSent marks an outcome whose message was never handed to the
// sender: its claim lapsed first, or could not be checked. record queues
// it again if the claim is still this instance's, and leaves it alone if
// another instance took it over.
var errNotSent = errors.New("not handed to the sender")

// errClaimLost: the message's claim lapsed, or had too little of its lease
// left, before its send (this instance stood still past it), so it may be
// another instance's by now.
var errClaimLost = fmt.Errorf("%w: its claim lapsed before the send", errNotSent)

// fenceReq asks the fence loop to check one message's claim.
type fenceReq struct {
	c     claimed
	reply chan<- fenceAns
}

// fenceAns is the answer: the time by which the send must end, or why the
// message must not be sent.
type fenceAns struct {
	until time.Time
	err   error
}

// fence checks, just before cs are handed to the sender, that their
// claims are still this instance's and their leases live on the store's
// clock. It returns, for each message still claimed (fenceKey), the local
// time by which its send must end: its remaining lease, less a third of a
// lease, after the check began. A send thus ends within its lease or is
// cut off, and an instance that stood still (a frozen process or VM) sends
// nothing whose lease lapsed meanwhile: another instance may have taken it.
// The check only reads (one statement per claim, prepared once): a peer
// takes a claim back only once its lease has lapsed on the store's clock,
// and by then every send under it has ended.
//
// A SQLite store has one process (the single-process lease): nobody else
// takes its claims back, so there it does not read the store and every
// message gets two thirds of a lease.
func (o *Outbox) fence(ctx context.Context, cs []claimed) (map[string]time.Time, error) {
	start := time.Now()
	until := make(map[string]time.Time, len(cs))
	if !o.db.Postgres() {
		for _, c := range cs {
			until[fenceKey(c.token, c.ID)] = start.Add(o.lease * 2 / 3)
		}
		return until, nil
	}
	stmt, err := o.prepared(ctx, `SELECT id, lease_until - `+o.db.NowSQL()+` FROM notify_messages WHERE status = $1 AND claim_token = $2`)
	if err != nil {
		return nil, fmt.Errorf("cannot check message claims: %w", err)
	}
	done := map[string]bool{}
	for _, c := range cs {
		if done[c.token] {
			continue
		}
		done[c.token] = true
		rows, err := stmt.QueryContext(ctx, StatusSending, c.token)
		if err != nil {
			return nil, fmt.Errorf("cannot check message claims: %w", err)
		}
		for rows.Next() {
			var id string
			var left int64
			if err := rows.Scan(&id, &left); err != nil {
				rows.Close()
				return nil, fmt.Errorf("cannot check message claims: %w", err)
			}
			if d := time.Duration(left) - o.lease/3; d > 0 {
				until[fenceKey(c.token, id)] = start.Add(d)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("cannot check message claims: %w", err)
		}
	}
	return until, nil
}

// fenceKey names message id under claim token in fence's answer.
func fenceKey(token, id string) string { return token + "\x00" + id }

// fenceLoop checks claims for the workers until reqs is closed, many per
// statement: the requests that gather while one check runs go in the next.
func (o *Outbox) fenceLoop(ctx context.Context, reqs <-chan fenceReq) {
	for first := range reqs {
		batch := []fenceReq{first}
	fill:
		for len(batch) < recordBatch {
			select {
			case r, ok := <-reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		cs := make([]claimed, len(batch))
		for i, r := range batch {
			cs[i] = r.c
		}
		until, err := o.fence(ctx, cs)
		for _, r := range batch {
			u, ok := until[fenceKey(r.c.token, r.c.ID)]
			switch {
			case err != nil:
				r.reply <- fenceAns{err: fmt.Errorf("%w: %w", errNotSent, err)}
			case !ok:
				r.reply <- fenceAns{err: errClaimLost}
			default:
				r.reply <- fenceAns{until: u}
			}
		}
	}
}

// checkClaim checks c's claim through the fence loop that fences feeds, or
// on its own when fences is nil (runOnce).
func (o *Outbox) checkClaim(ctx context.Context, c claimed, fences chan<- fenceReq) (time.Time, error) {
	if fences == nil {
		until, err := o.fence(ctx, []claimed{c})
		u, ok := until[fenceKey(c.token, c.ID)]
		switch {
		case err != nil:
			return time.Time{}, fmt.Errorf("%w: %w", errNotSent, err)
		case !ok:
			return time.Time{}, errClaimLost
		}
		return u, nil
	}
	reply := make(chan fenceAns, 1)
	fences <- fenceReq{c: c, reply: reply}
	a := <-reply
	return a.until, a.err
}

// ours runs q, an UPDATE of r's row ending in "WHERE id = $n" with args,
// only while r's claim is still this instance's, and reports whether it
// did: an instance that stood still past its lease records nothing over
// the instance that took the message over.
func ours(ctx context.Context, tx execer, r outcome, q string, args ...any) (bool, error) {
	n := len(args)
	q += fmt.Sprintf(" AND status = $%d AND claim_token = $%d", n+1, n+2)
	res, err := tx.ExecContext(ctx, q, append(args, StatusSending, r.token)...)
	if err != nil {
		return false, err
	}
	k, err := res.RowsAffected()
	return k > 0, err
}

// statusLapsed counts (gridbell_sms_total) an outcome not recorded because
// its claim lapsed and passed to another instance, and a message not sent
// because its claim lapsed first.
const statusLapsed = "lapsed"

// newNonce tells one process's claims from those of an earlier run of the
// same instance.
func newNonce() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
