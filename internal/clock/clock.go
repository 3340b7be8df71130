// Package clock gives components their notion of now, so rules and policies
// can be replayed with a fake clock in tests. Timers are never sleeps: code
// asks Now() on a tick and compares with stored due times.
package clock

import (
	"fmt"
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Fake is a clock that only moves when told. Safe for concurrent use.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Set moves the clock to t.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.mu.Unlock()
}

// Advance moves the clock forward by d.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// Offset runs D ahead of the wall clock (behind when D < 0), as a host
// whose clock is off: the test suite starts an instance with
// GRIDBELL_TEST_CLOCK_OFFSET to check that nothing shared trusts a host's
// clock (FromEnv).
type Offset struct{ D time.Duration }

// Now returns time.Now() + D.
func (c Offset) Now() time.Time { return time.Now().Add(c.D) }

// OffsetEnv names the test suite's variable for FromEnv.
const OffsetEnv = "GRIDBELL_TEST_CLOCK_OFFSET"

// FromEnv returns the wall clock, or an Offset one when OffsetEnv holds a
// duration (a test's instance whose host clock is off).
func FromEnv(getenv func(string) string) (Clock, error) {
	s := getenv(OffsetEnv)
	if s == "" {
		return Real{}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("%s=%q is not a duration: %w", OffsetEnv, s, err)
	}
	return Offset{D: d}, nil
}
