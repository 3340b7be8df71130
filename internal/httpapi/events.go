package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gridbell/gridbell/rules"
)

// Live feed timing: how often the outages are looked at while someone
// listens, and how often a quiet stream says it is alive.
const (
	livePoll  = 2 * time.Second
	liveAlive = 15 * time.Second
	liveDays  = 24 * time.Hour // closed outages stay in the feed this long
)

// liveFeed watches the outages while pages listen and wakes each listener
// when something changed. One watcher serves every page: a change costs
// one look at the rules, then one scoped view per listener.
type liveFeed struct {
	s       *Server
	mu      sync.Mutex
	subs    map[chan struct{}]struct{}
	running bool
	last    []byte
	stop    chan struct{} // closed when the server shuts down
	once    sync.Once
}

// close ends every stream: the server is shutting down.
func (f *liveFeed) close() { f.once.Do(func() { close(f.stop) }) }

// subscribe returns a channel that is signalled after a change, and its
// cancel. The watcher runs while anyone is subscribed.
func (f *liveFeed) subscribe() (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[chan struct{}]struct{}{}
	}
	f.subs[ch] = struct{}{}
	if !f.running {
		f.running = true
		go f.watch()
	}
	return ch, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}
}

// watch ends when the last listener has gone.
func (f *liveFeed) watch() {
	t := time.NewTicker(livePoll)
	defer t.Stop()
	for range t.C {
		snap := f.fingerprint()
		f.mu.Lock()
		if len(f.subs) == 0 {
			f.running, f.last = false, nil
			f.mu.Unlock()
			return
		}
		if !bytes.Equal(snap, f.last) {
			f.last = snap
			for ch := range f.subs {
				select {
				case ch <- struct{}{}:
				default: // already woken
				}
			}
		}
		f.mu.Unlock()
	}
}

// fingerprint is everything a page shows of the outages, unscoped.
func (f *liveFeed) fingerprint() []byte {
	list := f.s.feedOutages(context.Background(), principal{role: RoleAdmin})
	b, _ := json.Marshal(struct {
		Storm   bool
		Outages []rules.Outage
		Pending []rules.PendingArea
	}{f.s.stormMode(), list, f.s.pending(principal{role: RoleAdmin})})
	return b
}

// pending are the areas of p's grids whose meters went dark and await their
// momentary decision.
func (s *Server) pending(p principal) []rules.PendingArea {
	out := []rules.PendingArea{}
	src, ok := s.deps.Overview.(interface{ Pending() []rules.PendingArea })
	if !ok {
		return out
	}
	for _, a := range src.Pending() {
		if p.canSeeGrid(a.Grid) {
			a.Name = s.areaName(a.Area)
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) stormMode() bool {
	return s.deps.Overview != nil && s.deps.Overview.StormMode()
}

// feedOutages are the outages a page lists for p: live ones, those that
// need attention, and those closed in the last day; with p's counts.
func (s *Server) feedOutages(ctx context.Context, p principal) []rules.Outage {
	cut := time.Now().Add(-liveDays)
	out := []rules.Outage{}
	for _, o := range s.deps.Outages.OutagesIn("", p.scope()) {
		recent := o.RestoredAt != nil && o.RestoredAt.After(cut) || o.Status == "active" || o.Status == "scheduled"
		if recent || o.NeedsAttention {
			out = append(out, s.withCounts(ctx, o, p))
		}
	}
	return out
}

// feedMessage is what a page is sent on each change.
type feedMessage struct {
	At      time.Time      `json:"at"`
	Storm   bool           `json:"storm"`
	Outages []rules.Outage `json:"outages"`
	// Pending: meters dark in these areas, no outage decided yet (the
	// momentary window runs until decide_at).
	Pending []rules.PendingArea `json:"pending"`
}

// events answers GET /api/v1/events with server-sent events: "outages"
// with the asker's outage list whenever it changes, and "alive" every 15 s
// otherwise, so the page can say when it last heard from the server. The
// browser's EventSource reconnects by itself; "retry" says after how long.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	if err := LiftWriteDeadline(w); err != nil { // a stream outlives http.write_timeout
		s.log.Warn().Err(err).Msg("live feed")
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(200)
	fmt.Fprint(w, "retry: 3000\n\n")
	changed, cancel := s.live.subscribe()
	defer cancel()
	alive := time.NewTicker(liveAlive)
	defer alive.Stop()
	var last []byte
	send := func() bool {
		msg := feedMessage{At: time.Now().UTC(), Storm: s.stormMode(), Outages: s.feedOutages(r.Context(), p), Pending: s.pending(p)}
		b, _ := json.Marshal([]any{msg.Outages, msg.Pending})
		if bytes.Equal(b, last) && last != nil {
			return true
		}
		last = b
		data, _ := json.Marshal(msg)
		_, err := fmt.Fprintf(w, "event: outages\ndata: %s\n\n", data)
		return err == nil && rc.Flush() == nil
	}
	if !send() {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.live.stop:
			return
		case <-changed:
			if !send() {
				return
			}
		case now := <-alive.C:
			if _, err := fmt.Fprintf(w, "event: alive\ndata: {\"at\":%q}\n\n", now.UTC().Format(time.RFC3339)); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
