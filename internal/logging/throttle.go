package logging

import (
	"sync"
	"time"
)

// Throttle lets a log line that can repeat thousands of times a second
// through at most once per Period, and says how many it held back.
type Throttle struct {
	Period time.Duration

	mu         sync.Mutex // guards the fields below
	last       time.Time
	suppressed int
}

// Allow reports whether to log now, and how many lines were held back since
// the last one logged.
func (t *Throttle) Allow() (ok bool, suppressed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.last) < t.Period {
		t.suppressed++
		return false, 0
	}
	t.last, suppressed, t.suppressed = now, t.suppressed, 0
	return true, suppressed
}
