package logging

import (
	"testing"
	"time"
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
