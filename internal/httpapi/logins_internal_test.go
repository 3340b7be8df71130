package httpapi

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestLoginGateBackoffAndPrune: each lockout of a name at an address lasts
// twice the last (up to 15 min), a success clears it, and pairs and
// addresses untouched for an hour are forgotten.
func TestLoginGateBackoffAndPrune(t *testing.T) {
	g := newLoginGate()
	a := netip.MustParseAddr("203.0.113.7")
	p := loginPair{"sun", a}
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	fail := func(n int) {
		for range n {
			if no := g.reserve(p, now); no != nil {
				t.Fatalf("reserve at %v refused: %+v", now, no)
			}
			g.finish(p, false, false, now)
		}
	}
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute} {
		fail(5)
		no := g.reserve(p, now)
		if no == nil || no.retry != want {
			t.Fatalf("lockout %d: %+v, want one of %v", i+1, no, want)
		}
		now = now.Add(want)
		g.addrs[a].tokens = loginAddrBurst // this test is about the pair, not the address
	}
	if no := g.reserve(p, now); no != nil {
		t.Fatalf("after the lockout: %+v", no)
	}
	g.finish(p, true, false, now)
	fail(5)
	if no := g.reserve(p, now); no == nil || no.retry != time.Minute {
		t.Errorf("after a success the next lockout = %+v, want a minute again", no)
	}

	for i := range 1000 {
		q := loginPair{"name" + strconv.Itoa(i), netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}
		g.reserve(q, now)
		g.finish(q, false, false, now)
	}
	if pairs, addrs := g.size(); pairs != 1001 || addrs != 257 {
		t.Fatalf("table = %d pairs, %d addresses, want 1001 and 257", pairs, addrs)
	}
	g.reserve(loginPair{"late", a}, now.Add(loginIdle+time.Minute))
	if pairs, addrs := g.size(); pairs != 1 || addrs != 1 {
		t.Errorf("an hour later: %d pairs, %d addresses, want only the one just seen", pairs, addrs)
	}
}
