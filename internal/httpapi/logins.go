package httpapi

import (
	"context"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gridbell/gridbell/internal/metrics"
)

// Login limits (docs/security.md). A password check costs a 600,000-round
// hash, about 150 ms of a core, so who may start one is decided before it,
// in one step under a lock: parallel guesses cannot slip past a lockout.
const (
	// loginFailures wrong passwords in a row for one name from one client
	// address lock that pair out; checks under way count as failures until
	// they end, so at most loginFailures run at once for a pair.
	loginFailures = 5
	// loginLockout is the first lockout; each next one for the same pair
	// doubles, up to loginMaxLockout. A success clears the pair.
	loginLockout    = time.Minute
	loginMaxLockout = 15 * time.Minute
	// loginAddrBurst wrong passwords from one client address (any names)
	// may come at once, then one per loginAddrEvery.
	loginAddrBurst = 20
	loginAddrEvery = 3 * time.Second
	// loginWait is how long a check waits for a free hashing slot (at most
	// half the cores hash passwords at once) before the login is refused.
	loginWait = 2 * time.Second
	// loginIdle: a pair or address untouched this long is forgotten;
	// loginMaxEntries bounds the table between prunes.
	loginIdle       = time.Hour
	loginMaxEntries = 50_000
)

var loginChecks = metrics.Default.CounterVec("gridbell_http_login_attempts_total",
	"Logins by outcome: ok and wrong were checked against a password hash; locked (name and address locked out), address (too many wrong passwords from the address) and busy (no free hashing slot) were refused with 429 before any hash.",
	"result")

// loginGate decides who may have a password checked.
type loginGate struct {
	slots chan struct{} // a token per password check under way

	mu     sync.Mutex // guards what follows
	pairs  map[loginPair]*loginTries
	addrs  map[netip.Addr]*addrBudget
	pruned time.Time
}

type loginPair struct {
	name string
	addr netip.Addr
}

// loginTries is one name from one address.
type loginTries struct {
	fails    int // wrong passwords in a row
	checking int // checks under way
	lockouts int // so far: the next one lasts loginLockout << lockouts
	until    time.Time
	seen     time.Time
}

// addrBudget is a token bucket of wrong passwords for one address.
type addrBudget struct {
	tokens float64
	at     time.Time
}

func newLoginGate() *loginGate {
	for _, result := range []string{"ok", "wrong", "locked", "address", "busy"} {
		loginChecks.WithLabelValues(result) // every series shows from the start
	}
	return &loginGate{slots: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		pairs: map[loginPair]*loginTries{}, addrs: map[netip.Addr]*addrBudget{}}
}

// loginRefusal is why a login was refused before its check, and for how long.
type loginRefusal struct {
	result string // the metric's label
	msg    string
	retry  time.Duration
}

// admit decides whether name from addr may have a password checked now.
// When it may, done must be called with the outcome once the check ends.
func (g *loginGate) admit(ctx context.Context, name string, addr netip.Addr, now time.Time) (done func(ok bool), no *loginRefusal) {
	p := loginPair{name, addr}
	if no := g.reserve(p, now); no != nil {
		return nil, no
	}
	wait := time.NewTimer(loginWait)
	defer wait.Stop()
	select {
	case g.slots <- struct{}{}:
	case <-wait.C:
		g.finish(p, false, true, now)
		return nil, &loginRefusal{"busy", "too many logins at once: try again", time.Second}
	case <-ctx.Done():
		g.finish(p, false, true, now)
		return nil, &loginRefusal{"busy", "the login was given up", time.Second}
	}
	return func(ok bool) {
		<-g.slots
		g.finish(p, ok, false, time.Now())
	}, nil
}

// reserve counts a check for p under way, or says why not.
func (g *loginGate) reserve(p loginPair, now time.Time) *loginRefusal {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(now)
	t := g.pairs[p]
	if t != nil {
		t.seen = now
		if now.Before(t.until) {
			return &loginRefusal{"locked", "too many wrong passwords: try again later", t.until.Sub(now)}
		}
		if t.fails+t.checking >= loginFailures {
			// The checks under way may lock the pair: wait for them.
			return &loginRefusal{"locked", "too many wrong passwords: try again later", time.Second}
		}
	}
	b := g.addrs[p.addr]
	if b == nil {
		b = &addrBudget{tokens: loginAddrBurst, at: now}
		g.addrs[p.addr] = b
	}
	b.tokens = min(loginAddrBurst, b.tokens+float64(now.Sub(b.at))/float64(loginAddrEvery))
	b.at = now
	if b.tokens < 1 {
		return &loginRefusal{"address", "too many wrong passwords from this address: try again later",
			time.Duration((1 - b.tokens) * float64(loginAddrEvery))}
	}
	b.tokens--
	if t == nil { // only now: a refused address adds no pairs to the table
		t = &loginTries{seen: now}
		g.pairs[p] = t
	}
	t.checking++
	return nil
}

// finish ends a check reserved for p: a success clears the pair and gives
// the address its token back; a wrong password may lock the pair out. A
// check that never ran (refunded) changes nothing but the count under way.
func (g *loginGate) finish(p loginPair, ok, refunded bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.pairs[p]
	if t == nil { // pruned while checking: only when the table overflowed
		return
	}
	t.checking--
	if ok || refunded {
		if b := g.addrs[p.addr]; b != nil {
			b.tokens = min(loginAddrBurst, b.tokens+1)
		}
	}
	switch {
	case ok:
		delete(g.pairs, p)
	case !refunded:
		t.fails++
		if t.fails >= loginFailures {
			t.fails = 0
			t.until = now.Add(min(loginMaxLockout, loginLockout<<min(t.lockouts, 10)))
			t.lockouts++
		}
	}
}

// prune forgets pairs and addresses untouched for loginIdle, once a minute,
// or at once when the table has grown past loginMaxEntries (then every
// pair not locked out and not being checked goes). Caller holds g.mu.
func (g *loginGate) prune(now time.Time) {
	full := len(g.pairs) > loginMaxEntries || len(g.addrs) > loginMaxEntries
	if !full && now.Sub(g.pruned) < time.Minute {
		return
	}
	g.pruned = now
	for p, t := range g.pairs {
		if t.checking == 0 && now.After(t.until) && (full || now.Sub(t.seen) > loginIdle) {
			delete(g.pairs, p)
		}
	}
	for a, b := range g.addrs {
		if full || now.Sub(b.at) > loginIdle {
			delete(g.addrs, a)
		}
	}
}

// size is how many pairs and addresses the gate remembers.
func (g *loginGate) size() (pairs, addrs int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pairs), len(g.addrs)
}

// clientAddr is the address a login is limited by: the peer's, or, from a
// trusted proxy, the last address X-Forwarded-For or X-Real-Ip names (the
// one the proxy itself saw). IPv6 addresses count by their /64, which one
// subscriber usually holds whole.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	a, _ := remoteAddr(r)
	if trusted(s.proxies, r) {
		fwd := r.Header.Values("X-Forwarded-For")
		last := r.Header.Get("X-Real-Ip")
		if len(fwd) > 0 {
			list := strings.Split(fwd[len(fwd)-1], ",")
			last = list[len(list)-1]
		}
		if f, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
			a = f.Unmap()
		}
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	return a
}
