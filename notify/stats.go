package notify

import (
	"context"
	"fmt"
	"strings"

	"github.com/gridbell/gridbell/internal/store"
)

// RefStats counts what was sent about one ref (an outage, a billing event).
type RefStats struct {
	Notified  int               // accounts with a message sent or delivered
	Delivered int               // accounts with a message delivered
	Accounts  map[string]string // account → status of its latest message, with the reason when nothing went out ("suppressed: landline")
	reached   map[string]uint8  // account → reachedNotified|reachedDelivered
}

const (
	reachedNotified  = 1 << iota // a message was sent or delivered
	reachedDelivered             // a message was delivered
)

// Within is st over the accounts keep accepts alone: a grid manager's
// share of an outage.
func (st RefStats) Within(keep func(account string) bool) RefStats {
	out := RefStats{Accounts: map[string]string{}, reached: map[string]uint8{}}
	for acct, status := range st.Accounts {
		if !keep(acct) {
			continue
		}
		out.Accounts[acct] = status
		f := st.reached[acct]
		out.reached[acct] = f
		if f&reachedNotified != 0 {
			out.Notified++
		}
		if f&reachedDelivered != 0 {
			out.Delivered++
		}
	}
	return out
}

// statusRank orders statuses from most to least useful to a customer; an
// account with several phones shows its best.
var statusRank = map[string]int{
	StatusDelivered: 0, StatusSent: 1, StatusSending: 2, StatusQueued: 3, StatusHeld: 4, StatusPending: 5,
	StatusUndelivered: 6, StatusFailed: 7, StatusRejected: 8, StatusSuppressed: 9,
}

type accountState struct {
	created   int64
	status    string
	reason    string
	notified  bool
	delivered bool
}

// Stats reports, for ref, how many accounts were notified and delivered,
// and each account's latest status.
func (o *Outbox) Stats(ctx context.Context, ref string) (RefStats, error) {
	return o.StatsOf(ctx, []string{ref})
}

// StatsOf is Stats over several refs taken as one: an outage record that
// merged others keeps their ids as aliases, and what was sent under any of
// them counts once per account.
func (o *Outbox) StatsOf(ctx context.Context, refs []string) (RefStats, error) {
	if len(refs) == 0 {
		return RefStats{Accounts: map[string]string{}}, nil
	}
	ref := strings.Join(refs, ",")
	args := make([]any, 0, len(refs)+1)
	args = append(args, StatusPending)
	for _, r := range refs {
		args = append(args, r)
	}
	list := store.Marks(true, 1, len(refs))
	rows, err := o.db.QueryContext(ctx, `SELECT l.account, l.phone, l.created_at, l.status, l.reason,
			COALESCE(m.status, ''), COALESCE(m.reason, '')
		FROM notify_links l LEFT JOIN notify_messages m ON m.id = l.message_id
		WHERE l.ref IN (`+list+`) AND l.account <> ''
		UNION ALL
		SELECT account, '', created_at, $1, '', '', '' FROM notify_intents
		WHERE ref IN (`+list+`) AND state = $1 AND account <> ''`, args...)
	if err != nil {
		return RefStats{}, fmt.Errorf("cannot read sms stats of %s: %w", ref, err)
	}
	defer rows.Close()
	accts := map[string]*accountState{}
	for rows.Next() {
		var acct, phone, lStatus, lReason, mStatus, mReason string
		var created int64
		if err := rows.Scan(&acct, &phone, &created, &lStatus, &lReason, &mStatus, &mReason); err != nil {
			return RefStats{}, fmt.Errorf("cannot read sms stats of %s: %w", ref, err)
		}
		status, reason := mStatus, mReason
		if status == "" {
			status, reason = lStatus, lReason
		}
		a := accts[acct]
		if a == nil {
			a = &accountState{created: created, status: status, reason: reason}
			accts[acct] = a
		}
		a.notified = a.notified || status == StatusSent || status == StatusDelivered
		a.delivered = a.delivered || status == StatusDelivered
		switch {
		case created > a.created:
			a.created, a.status, a.reason = created, status, reason
		case created == a.created && statusRank[status] < statusRank[a.status],
			// The account-wide row ("no valid phone: …") explains best.
			created == a.created && statusRank[status] == statusRank[a.status] && phone == "":
			a.status, a.reason = status, reason
		}
	}
	if err := rows.Err(); err != nil {
		return RefStats{}, fmt.Errorf("cannot read sms stats of %s: %w", ref, err)
	}
	st := RefStats{Accounts: make(map[string]string, len(accts)), reached: make(map[string]uint8, len(accts))}
	for acct, a := range accts {
		if a.notified {
			st.Notified++
			st.reached[acct] |= reachedNotified
		}
		if a.delivered {
			st.Delivered++
			st.reached[acct] |= reachedDelivered
		}
		st.Accounts[acct] = describe(a.status, a.reason)
	}
	return st, nil
}

// describe is a status as the customer list shows it.
func describe(status, reason string) string {
	switch status {
	case StatusSuppressed, StatusRejected, StatusHeld, StatusUndelivered, StatusFailed:
		if reason != "" {
			return status + ": " + reason
		}
	}
	return status
}
