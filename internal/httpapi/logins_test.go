package httpapi_test

import (
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// loginFrom posts a login for name as if from addr (the world trusts its
// loopback proxy's X-Forwarded-For) and returns the status code.
func (w *world) loginFrom(addr, name, pass string) int {
	req, _ := http.NewRequest("POST", w.srv.URL+"/api/v1/login", strings.NewReader(`{"name":"`+name+`","password":"`+pass+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "198.51.100.1, "+addr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Error(err)
		return 0
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		w.t.Errorf("429 without Retry-After")
	}
	return resp.StatusCode
}

// parallelLogins sends one login per name at once and counts the answers.
func (w *world) parallelLogins(addr func(i int) string, names []string, pass string) map[int]int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	codes := map[int]int{}
	for i, name := range names {
		wg.Go(func() {
			code := w.loginFrom(addr(i), name, pass)
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return codes
}

// TestLoginLockoutRace (issue 21): 30 wrong passwords for one name from
// one address, all at once, get at most 5 password checks (401); the rest
// are refused with 429 before any hash. The lockout holds that name at
// that address only: the person logs in from their own address.
func TestLoginLockoutRace(t *testing.T) {
	w := newWorld(t, "sqlite", worldCSV)
	same := func(int) string { return "203.0.113.7" }
	codes := w.parallelLogins(same, slicesOf("sun", 30), "guess-guess")
	if codes[401] < 1 || codes[401] > 5 || codes[401]+codes[429] != 30 {
		t.Errorf("30 parallel wrong passwords answered %v, want 1 to 5 × 401 and the rest 429", codes)
	}
	t.Logf("30 parallel wrong passwords: %v", codes)
	// Checks refused for want of a hashing slot do not count: guess on
	// until the lockout, at most 5 more times.
	for i := 0; i < 5 && w.loginFrom("203.0.113.7", "sun", "guess-guess") == 401; i++ {
	}
	if code := w.loginFrom("203.0.113.7", "sun", password); code != http.StatusTooManyRequests {
		t.Errorf("the right password from the locked-out address = %d, want 429", code)
	}
	if code := w.loginFrom("203.0.113.99", "sun", password); code != 200 {
		t.Errorf("sun from another address while a stranger is locked out = %d, want 200", code)
	}
}

// TestLoginPerAddress (issue 21): one address guessing many names gets at
// most 20 checks at once (then one per 3 s); 60 addresses guessing at once
// share a few hashing slots, and whoever waits over 2 s is refused, so
// logins cannot take every core.
func TestLoginPerAddress(t *testing.T) {
	w := newWorld(t, "sqlite", worldCSV)
	names := make([]string, 30)
	for i := range names {
		names[i] = "nobody" + strconv.Itoa(i)
	}
	t0 := time.Now()
	codes := w.parallelLogins(func(int) string { return "203.0.113.8" }, names, "guess-guess")
	refill := int(time.Since(t0) / (3 * time.Second))
	if codes[401] > 20+refill || codes[401]+codes[429] != 30 {
		t.Errorf("30 names guessed at once from one address answered %v, want at most %d × 401 and the rest 429", codes, 20+refill)
	}
	// How many checks fit in the 2 s a login waits for one of the
	// GOMAXPROCS/2 hashing slots, from one check's time here.
	t0 = time.Now()
	w.loginFrom("192.0.2.250", "nobody", "guess-guess")
	slots := max(1, runtime.GOMAXPROCS(0)/2)
	fit := slots * (1 + int(2*time.Second/time.Since(t0)))
	names = slicesOf("nobody", 60)
	codes = w.parallelLogins(func(i int) string { return "192.0.2." + strconv.Itoa(i+1) }, names, "guess-guess")
	if codes[401]+codes[429] != 60 || (fit < 60 && codes[429] == 0) {
		t.Errorf("60 addresses guessing at once answered %v, want 401 or 429, and some 429 (no free hashing slot) where about %d checks fit in 2 s", codes, fit)
	}
	if code := w.loginFrom("192.0.2.200", "li", password); code != 200 {
		t.Errorf("li after the guessing = %d, want 200", code)
	}
}

func slicesOf(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
