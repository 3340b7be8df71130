package notify

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// Sent is one message to one customer's phone as operators see it: which
// kind, about what, when, and whether it was delivered.
type Sent struct {
	Account string     `json:"account"`
	Kind    string     `json:"kind"`
	Ref     string     `json:"ref"`
	Phone   string     `json:"phone"` // E.164; the HTTP layer masks it
	Status  string     `json:"status"`
	Reason  string     `json:"reason,omitempty"`
	At      time.Time  `json:"at"` // when it was decided
	SentAt  *time.Time `json:"sent_at,omitempty"`
	Updated *time.Time `json:"updated_at,omitempty"` // the latest receipt or attempt
}

// History lists the messages of accounts, newest first, at most limit:
// those sent or kept from sending (with the reason), and intents not yet
// expanded into messages.
func (o *Outbox) History(ctx context.Context, accounts []string, limit int) ([]Sent, error) {
	if len(accounts) == 0 {
		return []Sent{}, nil
	}
	args := make([]any, 0, len(accounts)+2)
	args = append(args, StatusPending, limit)
	for _, a := range accounts {
		args = append(args, a)
	}
	list := store.Marks(true, 2, len(accounts))
	rows, err := o.db.QueryContext(ctx, `SELECT l.intent_key, l.account, COALESCE(m.kind, i.kind, ''), l.ref, l.phone, l.created_at,
			COALESCE(m.status, l.status), COALESCE(m.reason, l.reason), COALESCE(m.sent_at, 0), COALESCE(m.updated_at, 0)
		FROM notify_links l LEFT JOIN notify_messages m ON m.id = l.message_id
			LEFT JOIN notify_intents i ON i.key = l.intent_key
		WHERE l.account IN (`+list+`)
		UNION ALL
		SELECT key, account, kind, ref, to_phone, created_at, $1, '', 0, 0 FROM notify_intents
		WHERE account IN (`+list+`) AND state = $1
		ORDER BY 6 DESC LIMIT $2`, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read message history: %w", err)
	}
	defer rows.Close()
	var all []Sent
	var keys []string
	perPhone := map[string]bool{} // intents with a row per phone
	for rows.Next() {
		var s Sent
		var key string
		var at, sent, upd int64
		if err := rows.Scan(&key, &s.Account, &s.Kind, &s.Ref, &s.Phone, &at, &s.Status, &s.Reason, &sent, &upd); err != nil {
			return nil, fmt.Errorf("cannot read message history: %w", err)
		}
		s.At, s.SentAt, s.Updated = time.Unix(0, at).UTC(), optTime(sent), optTime(upd)
		all, keys = append(all, s), append(keys, key)
		if s.Phone != "" {
			perPhone[key+"\x00"+s.Account] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read message history: %w", err)
	}
	// An intent whose phones each have a row also has an account-wide row
	// ("no valid phone: …" beside "landline"): one line says it.
	out := make([]Sent, 0, len(all))
	for i, s := range all {
		if s.Phone == "" && perPhone[keys[i]+"\x00"+s.Account] {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func optTime(ns int64) *time.Time {
	if ns <= 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

// Minute is one minute of SMS traffic: messages queued in it, sent in it,
// and delivered or failed in it (by receipt time).
type Minute struct {
	At        time.Time `json:"at"`
	Queued    int       `json:"queued"`
	Sent      int       `json:"sent"`
	Delivered int       `json:"delivered"`
	Failed    int       `json:"failed"`
}

// Minutes counts the traffic of messages queued since since, per minute,
// oldest first, in grids (none = all). A message queued before since is
// not counted even when it was sent after it: the index on queued_at keeps
// this cheap in a storm.
func (o *Outbox) Minutes(ctx context.Context, since time.Time, grids []string) ([]Minute, error) {
	const min = int64(time.Minute)
	args := []any{since.UnixNano()}
	where := ""
	if len(grids) > 0 {
		where = ` AND grid IN (` + store.Marks(true, 1, len(grids)) + `)`
		for _, g := range grids {
			args = append(args, g)
		}
	}
	rows, err := o.db.QueryContext(ctx, `SELECT queued_at / 60000000000, sent_at / 60000000000, updated_at / 60000000000, status, COUNT(*)
		FROM notify_messages WHERE queued_at >= $1`+where+`
		GROUP BY queued_at / 60000000000, sent_at / 60000000000, updated_at / 60000000000, status`, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read sms minutes: %w", err)
	}
	defer rows.Close()
	by := map[int64]*Minute{}
	at := func(m int64) *Minute {
		if by[m] == nil {
			by[m] = &Minute{At: time.Unix(0, m*min).UTC()}
		}
		return by[m]
	}
	for rows.Next() {
		var q, s, u, n int64
		var status string
		if err := rows.Scan(&q, &s, &u, &status, &n); err != nil {
			return nil, fmt.Errorf("cannot read sms minutes: %w", err)
		}
		at(q).Queued += int(n)
		if s > 0 {
			at(s).Sent += int(n)
		}
		switch status {
		case StatusDelivered:
			at(u).Delivered += int(n)
		case StatusFailed, StatusUndelivered, StatusRejected:
			at(u).Failed += int(n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read sms minutes: %w", err)
	}
	out := make([]Minute, 0, len(by))
	for _, m := range by {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}
