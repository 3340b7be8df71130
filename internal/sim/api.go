package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// API paths for events (docs/interfaces.md §2).
const (
	omsPath     = "/api/v1/oms/events"
	billingPath = "/api/v1/billing/events"
)

// postAttempts bounds the retries of one post; gridbell may still be starting.
const postAttempts = 8

// post is one JSON object for the API.
type post struct {
	path, what string
	body       []byte
}

// poster sends OMS and billing events to gridbell's API in order, on its own
// goroutine so a slow API never holds up the timeline. The queue is bounded:
// a scenario posts a handful of events.
type poster struct {
	base, token string
	hc          *http.Client
	log         zerolog.Logger
	q           chan post
	done        chan struct{}
	backoff     time.Duration // first retry wait, doubled up to 5 s
}

func newPoster(base, token string, log zerolog.Logger) *poster {
	return &poster{base: strings.TrimRight(base, "/"), token: token, log: log,
		hc: &http.Client{Timeout: 10 * time.Second}, q: make(chan post, 64), done: make(chan struct{}), backoff: 500 * time.Millisecond}
}

// enqueue queues v for path; it blocks only if 64 posts are already waiting.
func (p *poster) enqueue(ctx context.Context, path, what string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		p.log.Error().Err(err).Str("post", what).Msg("cannot encode event")
		return
	}
	select {
	case p.q <- post{path: path, what: what, body: b}:
	case <-ctx.Done():
	}
}

// run sends queued posts until the queue is closed or ctx is done.
func (p *poster) run(ctx context.Context) {
	defer close(p.done)
	for it := range p.q {
		if ctx.Err() != nil {
			continue // drain
		}
		if err := p.send(ctx, it); err != nil {
			p.log.Error().Err(err).Str("post", it.what).Msg("event not delivered to the API")
		}
	}
}

// send posts it, retrying network errors, 5xx, 408 and 429 with backoff.
func (p *poster) send(ctx context.Context, it post) error {
	wait := p.backoff
	var err error
	for attempt := 1; attempt <= postAttempts; attempt++ {
		var retry bool
		if retry, err = p.try(ctx, it); err == nil || !retry {
			return err
		}
		p.log.Warn().Err(err).Str("post", it.what).Int("attempt", attempt).Msg("api post failed, retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	return err
}

func (p *poster) try(ctx context.Context, it post) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+it.path, bytes.NewReader(it.body))
	if err != nil {
		return false, fmt.Errorf("cannot build request for %s: %w", it.path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return ctx.Err() == nil, fmt.Errorf("cannot post to %s: %w", it.path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		p.log.Info().Str("post", it.what).Int("status", resp.StatusCode).Msg("api accepted event")
		return false, nil
	}
	retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
	return retry, fmt.Errorf("post to %s answered %s: %s", it.path, resp.Status, bytes.TrimSpace(msg))
}

// waitReady polls GET /readyz until it answers 200, for at most max. Events
// sent before gridbell subscribes would be lost, so the timeline waits.
func waitReady(ctx context.Context, base string, max time.Duration, log zerolog.Logger) {
	if max <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	url := strings.TrimRight(base, "/") + "/readyz"
	for i := 0; ; i++ {
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil); err == nil {
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		if i == 2 {
			log.Info().Str("url", url).Msg("waiting for gridbell to be ready")
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				log.Warn().Str("url", url).Dur("waited", max).Msg("gridbell not ready, playing anyway")
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
