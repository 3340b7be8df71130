package notify

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// shanghai is the default quiet-hours zone.
var shanghai = mustLoc("Asia/Shanghai")

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// at is a wall time in Shanghai on 2026-11-26.
func at(hh, mm int) time.Time { return time.Date(2026, 11, 26, hh, mm, 0, 0, shanghai) }

// recorder is a Sender that remembers what it was given, in order, and can
// fail chosen numbers.
type recorder struct {
	mu   sync.Mutex
	sent []Message
	fail map[string]error
}

func (r *recorder) Send(_ context.Context, m Message) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail[m.To]; err != nil {
		return Result{}, err
	}
	r.sent = append(r.sent, m)
	return Result{ProviderID: "SM" + m.ID, SentAt: time.Now()}, nil
}

func (r *recorder) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.sent...)
}

type harness struct {
	t   *testing.T
	o   *Outbox
	clk *clock.Fake
	rec *recorder
}

// newHarness opens a fresh store of driver and an outbox over it with a
// fake clock set to now.
func newHarness(t *testing.T, driver string, dir Directory, now time.Time, mod func(*Config, *QuietHours)) *harness {
	t.Helper()
	db := storetest.Open(t, driver)
	cfg := Config{}
	qh := QuietHours{Enabled: true}
	if mod != nil {
		mod(&cfg, &qh)
	}
	clk := clock.NewFake(now)
	rec := &recorder{fail: map[string]error{}}
	o, err := NewOutbox(cfg, qh, db, dir, rec, clk, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, o: o, clk: clk, rec: rec}
}

func (h *harness) enqueue(ins ...event.Intent) {
	h.t.Helper()
	for i := range ins {
		if ins[i].CreatedAt.IsZero() {
			ins[i].CreatedAt = h.clk.Now()
		}
	}
	if err := h.o.Enqueue(context.Background(), nil, ins); err != nil {
		h.t.Fatal(err)
	}
}

// run dispatches everything due and returns what was sent in this run.
func (h *harness) run() []Message {
	h.t.Helper()
	before := len(h.rec.messages())
	if _, err := h.o.runOnce(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	return h.rec.messages()[before:]
}

func (h *harness) stats(ref string) RefStats {
	h.t.Helper()
	st, err := h.o.Stats(context.Background(), ref)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func intent(key string, kind event.Kind, acct, ref string, vars map[string]string) event.Intent {
	return event.Intent{Key: key, Kind: kind, Account: acct, Ref: ref, Grid: "G01", Vars: vars, Priority: kindPriority(kind)}
}

// outageVars are an outage's template values.
var outageVars = map[string]string{"area": "TA-0101", "start": "2026-11-26T09:02:00+08:00", "etr": "2026-11-26T12:00:00+08:00"}
