package sim

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestPosterRetries: a starting gridbell answers 503; the poster retries and
// keeps the events in order, and gives up at once on a 400.
func TestPosterRetries(t *testing.T) {
	var mu sync.Mutex
	var got []string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		b, _ := io.ReadAll(r.Body)
		switch {
		case calls <= 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case string(b) == `"bad"`:
			w.WriteHeader(http.StatusBadRequest)
		default:
			got = append(got, string(b))
		}
	}))
	defer srv.Close()

	p := newPoster(srv.URL+"/", "", zerolog.Nop())
	p.backoff = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go p.run(ctx)
	for _, v := range []string{"first", "bad", "second"} {
		p.enqueue(ctx, omsPath, v, v)
	}
	close(p.q)
	<-p.done

	mu.Lock()
	defer mu.Unlock()
	if want := []string{`"first"`, `"second"`}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("API received %v, want %v", got, want)
	}
	if calls != 5 {
		t.Errorf("API called %d times, want 5: two 503s, then first, bad once, second", calls)
	}
}
