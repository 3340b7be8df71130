package contacts

import (
	"context"
	"fmt"
	"time"

	"github.com/gridbell/gridbell/internal/logging"
)

// stateOverlap is how far before the previous poll each poll of the phone
// states reads again: a change committed late (its changed_at was taken
// before a slow commit) or stamped by a host whose clock lags is still
// seen, as long as it is within this of the poll.
const stateOverlap = time.Minute

// stateFeed follows the phone states that other instances sharing the
// store record (Twilio verdicts, STOP and START replies): each poll reads
// the rows changed since shortly before the previous poll.
type stateFeed struct {
	polled time.Time        // when the previous poll (or full read) began
	seen   map[string]int64 // phone → changed_at of the state applied
}

// reset starts the feed over after every state was read at read.
func (f *stateFeed) reset(read time.Time) {
	f.polled, f.seen = read, map[string]int64{}
}

// PollStates applies the phone states that changed in the store since the
// last poll, recorded by another instance, to the registry, and returns
// how many it applied. States this registry recorded itself, or already
// applied, are passed over.
func (r *Registry) PollStates(ctx context.Context) (int, error) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	began := time.Now()
	from := r.feed.polled.Add(-stateOverlap).UnixNano()
	rows, err := r.db.QueryContext(ctx, `SELECT phone, verdict, reason, opt_out, changed_at FROM contacts_phone_state
		WHERE changed_at > $1`, from)
	if err != nil {
		return 0, fmt.Errorf("cannot read changed phone states: %w", err)
	}
	defer rows.Close()
	ix := r.ix.Load()
	n := 0
	for rows.Next() {
		var phone, verdict, reason string
		var optOut, changed int64
		if err := rows.Scan(&phone, &verdict, &reason, &optOut, &changed); err != nil {
			return n, fmt.Errorf("cannot read changed phone states: %w", err)
		}
		if r.feed.seen[phone] == changed {
			continue
		}
		applyState(ix, phone, verdict, reason, optOut)
		r.feed.seen[phone] = changed
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("cannot read changed phone states: %w", err)
	}
	for phone, changed := range r.feed.seen {
		if changed <= from {
			delete(r.feed.seen, phone)
		}
	}
	r.feed.polled = began
	return n, nil
}

// FollowStates polls the phone states every period until ctx is done, so
// that an opt-out or a Twilio verdict another instance records is heeded
// here within a period. A failed poll is logged and tried again.
func (r *Registry) FollowStates(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	errLog := logging.Throttle{Period: time.Minute}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := r.PollStates(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			if ok, held := errLog.Allow(); ok {
				r.log.Warn().Err(err).Int("also_failed", held).Msg("cannot follow phone states; retrying")
			}
		case n > 0:
			r.log.Debug().Int("phones", n).Msg("phone states recorded elsewhere applied")
		}
	}
}
