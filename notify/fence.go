package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// errNotSent marks an outcome whose message was never handed to the
// sender: its claim lapsed first, or could not be checked. record queues
// it again if the claim is still this instance's, and leaves it alone if
// another instance took it over.
var errNotSent = errors.New("not handed to the sender")

// errClaimLost: the message's claim lapsed before its send (this instance
// stood still past its lease), so it may be another instance's by now.
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
// clock, and renews those leases, all in one statement per claim. It
// returns the ids still claimed and the local time by which their sends
// must end: two thirds of a lease after the check began. A send thus ends
// within its lease or is cut off, and an instance that stood still past
// that time (the monotonic clock runs on while a process is stopped)
// sends nothing it checked before it stopped.
func (o *Outbox) fence(ctx context.Context, cs []claimed) (map[string]bool, time.Time, error) {
	start := time.Now()
	byToken := map[string][]any{}
	for _, c := range cs {
		byToken[c.token] = append(byToken[c.token], c.ID)
	}
	now := o.db.NowSQL()
	ours := make(map[string]bool, len(cs))
	tx, err := o.begin(ctx) // on SQLite, in turn with the other writers
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("cannot check message claims: %w", err)
	}
	defer tx.Rollback()
	for token, ids := range byToken {
		args := append([]any{int64(o.lease), StatusSending, token}, ids...)
		rows, err := tx.QueryContext(ctx, `UPDATE notify_messages SET lease_until = `+now+` + $1
			WHERE status = $2 AND claim_token = $3 AND lease_until > `+now+` AND id IN (`+store.Marks(true, 3, len(ids))+`) RETURNING id`, args...)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("cannot check message claims: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, time.Time{}, fmt.Errorf("cannot check message claims: %w", err)
			}
			ours[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, time.Time{}, fmt.Errorf("cannot check message claims: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, time.Time{}, fmt.Errorf("cannot check message claims: %w", err)
	}
	return ours, start.Add(o.lease * 2 / 3), nil
}

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
		ours, until, err := o.fence(ctx, cs)
		for _, r := range batch {
			switch {
			case err != nil:
				r.reply <- fenceAns{err: fmt.Errorf("%w: %w", errNotSent, err)}
			case !ours[r.c.ID]:
				r.reply <- fenceAns{err: errClaimLost}
			default:
				r.reply <- fenceAns{until: until}
			}
		}
	}
}

// checkClaim checks c's claim through the fence loop that fences feeds, or
// on its own when fences is nil (runOnce).
func (o *Outbox) checkClaim(ctx context.Context, c claimed, fences chan<- fenceReq) (time.Time, error) {
	if fences == nil {
		ours, until, err := o.fence(ctx, []claimed{c})
		switch {
		case err != nil:
			return time.Time{}, fmt.Errorf("%w: %w", errNotSent, err)
		case !ours[c.ID]:
			return time.Time{}, errClaimLost
		}
		return until, nil
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
