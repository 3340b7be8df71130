package ingest

import (
	"sync"
	"time"
)

// throttle lets a log line that can repeat thousands of times a second
// through at most once per period, and says how many it held back.
type throttle struct {
	period time.Duration

	mu         sync.Mutex // guards the fields below
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were held back since
// the last one logged.
func (t *throttle) allow() (ok bool, suppressed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.last) < t.period {
		t.suppressed++
		return false, 0
	}
	t.last, suppressed, t.suppressed = now, t.suppressed, 0
	return true, suppressed
}
