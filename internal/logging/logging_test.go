package logging

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestPhone(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := Phone(in); got != want {
			t.Errorf("Phone(%q) = %q, want %q", in, got, want)
		}
	}
	f("+8613812345678", "+86138****5678")
	f("13812345678", "138****5678")
	f("+14155550100", "+14155****0100")
	f("", "****")
	f("12345", "****")
}

func TestThrottle(t *testing.T) {
	th := Throttle{Period: time.Hour}
	if ok, _ := th.Allow(); !ok {
		t.Fatal("the first line was held back")
	}
	for range 3 {
		if ok, _ := th.Allow(); ok {
			t.Fatal("a line within the period went through")
		}
	}
	th.Period = 0
	if ok, held := th.Allow(); !ok || held != 3 {
		t.Errorf("Allow() after the period = %v, %d; want true, 3 held back", ok, held)
	}
}

// TestDurationsInSeconds: a duration is logged as seconds, whatever the
// component, so "took" reads the same on every line.
func TestDurationsInSeconds(t *testing.T) {
	var b strings.Builder
	l := zerolog.New(&b)
	l.Info().Dur("took", 1500*time.Millisecond).Msg("")
	if !strings.Contains(b.String(), `"took":1.5`) {
		t.Errorf("Dur(1.5s) logged as %s, want took 1.5 (seconds)", b.String())
	}
}
