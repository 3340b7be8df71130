package notify

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
)

// quietHours is the parsed quiet_hours section.
type quietHours struct {
	enabled    bool
	start, end int // minutes after local midnight
	loc        *time.Location
}

func newQuietHours(q QuietHours) (quietHours, error) {
	loc, err := time.LoadLocation(q.Timezone)
	if err != nil {
		return quietHours{}, err
	}
	s, _ := time.Parse("15:04", q.Start)
	e, _ := time.Parse("15:04", q.End)
	return quietHours{enabled: q.Enabled, loc: loc,
		start: s.Hour()*60 + s.Minute(), end: e.Hour()*60 + e.Minute()}, nil
}

// quietKinds are held during quiet hours; safety kinds and digests never are.
var quietKinds = map[event.Kind]bool{
	event.KindPlannedNotice: true, event.KindArrears: true,
	event.KindBalanceLow: true, event.KindDisconnectNotice: true,
}

// heldUntil returns when a message of kind k may go out if now is inside
// the quiet window, and the zero time when it may go now.
func (q quietHours) heldUntil(k event.Kind, now time.Time) time.Time {
	if !q.enabled || !quietKinds[k] || q.start == q.end {
		return time.Time{}
	}
	l := now.In(q.loc)
	min := l.Hour()*60 + l.Minute()
	midnight := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, q.loc)
	at := func(dayOffset, minutes int) time.Time {
		return midnight.AddDate(0, 0, dayOffset).Add(time.Duration(minutes) * time.Minute)
	}
	if q.start < q.end { // same-day window, e.g. 12:00–14:00
		if min >= q.start && min < q.end {
			return at(0, q.end)
		}
		return time.Time{}
	}
	switch { // window over midnight, e.g. 22:00–07:00
	case min >= q.start:
		return at(1, q.end)
	case min < q.end:
		return at(0, q.end)
	}
	return time.Time{}
}

// safetyKinds are exempt from the per-phone rate limit.
var safetyKinds = map[event.Kind]bool{
	event.KindOutage: true, event.KindETRUpdate: true,
	event.KindRestored: true, event.KindBalanceExhausted: true,
}

// kindPriority is a kind's priority when nothing makes it critical.
func kindPriority(k event.Kind) event.Priority {
	switch k {
	case event.KindOutage, event.KindETRUpdate, event.KindRestored, event.KindPlannedNotice, event.KindManagerDigest:
		return event.PriorityOutage
	}
	return event.PriorityBilling
}

// priority of an intent. PriorityCritical is Priority's zero value, so an
// intent only counts as critical when its account's class is critical or
// it is a manager digest marked critical; any other explicit priority is
// kept, and an unset one falls back to the kind's.
func priority(in event.Intent, acct *contacts.Account) event.Priority {
	switch {
	case acct != nil && acct.Class.Critical():
		return event.PriorityCritical
	case in.Priority == event.PriorityCritical && in.Kind == event.KindManagerDigest:
		return event.PriorityCritical
	case in.Priority > event.PriorityCritical:
		return in.Priority
	}
	return kindPriority(in.Kind)
}

// Retry timing: exponential from retryBase, at most retryCap, never sooner
// than the provider's Retry-After, plus up to 20% jitter.
const (
	retryBase = 2 * time.Second
	retryCap  = 5 * time.Minute
)

func retryDelay(attempt int, retryAfter time.Duration) time.Duration {
	d := retryBase
	for i := 1; i < attempt && d < retryCap; i++ {
		d *= 2
	}
	d = max(d, retryAfter)
	d = min(d, max(retryCap, retryAfter))
	return d + time.Duration(rand.Int64N(int64(d/5)+1))
}

// pacer spaces sends to at most rate a second across all workers.
type pacer struct {
	mu       sync.Mutex // guards next and interval
	next     time.Time
	interval time.Duration
}

func newPacer(rate float64) *pacer {
	return &pacer{interval: time.Duration(float64(time.Second) / rate)}
}

// rate is the sends a second the pacer allows.
func (p *pacer) rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return float64(time.Second) / float64(p.interval)
}

// setRate changes the rate from the next send on.
func (p *pacer) setRate(rate float64) {
	p.mu.Lock()
	p.interval = time.Duration(float64(time.Second) / rate)
	p.mu.Unlock()
}

// wait blocks until the caller's turn.
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	now := time.Now()
	t := p.next
	if t.Before(now) {
		t = now
	}
	p.next = t.Add(p.interval)
	p.mu.Unlock()
	d := t.Sub(now)
	if d < time.Millisecond { // a little debt is fine: next keeps the average
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
