package notify

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

// countingSender counts what one instance handed to the provider.
type countingSender struct {
	Sender
	n atomic.Int64
}

func (c *countingSender) Send(ctx context.Context, m Message) (Result, error) {
	c.n.Add(1)
	return c.Sender.Send(ctx, m)
}

// sharedOutboxes opens one outbox per instance name on a single fresh
// store of driver, each over its own connections as separate processes
// would, all sending to srv. The first imports n customers.
func sharedOutboxes(t *testing.T, driver string, srv *twiliotest.Server, n int, names ...string) ([]*Outbox, []*countingSender) {
	t.Helper()
	cfg := storetest.Config(t, driver)
	dir := t.TempDir()
	var os []*Outbox
	var snds []*countingSender
	for i, name := range names {
		db, err := store.Open(context.Background(), cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		ocfg := crashConfig(srv.URL)
		ocfg.Workers = 4
		snd, err := NewSender(ocfg, t.TempDir(), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		cs := &countingSender{Sender: snd}
		customers := n
		if i > 0 {
			customers = 0 // already imported; the registry loads them
		}
		o, err := NewOutbox(ocfg, QuietHours{}, db, loadRegistry(t, db, customers), cs, clock.Real{}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		o.SetInstance(name)
		os = append(os, o)
		snds = append(snds, cs)
	}
	return os, snds
}

// runUntil runs every outbox until done reports true (or 60 s pass), then
// stops them.
func runUntil(t *testing.T, os []*Outbox, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, o := range os {
		wg.Go(func() {
			if err := o.Run(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
}

// perPhone counts what srv received per phone, and the phones that got more
// than one.
func perPhone(srv *twiliotest.Server) (seen map[string]int, more int) {
	seen = map[string]int{}
	for _, m := range srv.Received() {
		seen[m.To]++
	}
	for _, k := range seen {
		if k > 1 {
			more++
		}
	}
	return seen, more
}

// checkOnce fails unless srv received exactly one message for each of n
// phones.
func checkOnce(t *testing.T, srv *twiliotest.Server, n int) {
	t.Helper()
	seen, twice := perPhone(srv)
	if len(seen) != n || srv.Count() != n || twice > 0 {
		t.Errorf("received %d messages to %d phones (%d phones more than once), want %d once each", srv.Count(), len(seen), twice, n)
	}
}

// TestSharedOutbox: two instances dispatching one outbox send every
// message exactly once between them.
func TestSharedOutbox(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		const n = 600
		srv := twiliotest.New(testSID, testToken)
		defer srv.Close()
		os, snds := sharedOutboxes(t, driver, srv, n, "gridbell-a", "gridbell-b")
		// Half the intents reach each instance, as the rules of two
		// instances would enqueue them.
		ins := loadIntents(n, time.Now())
		for i, o := range os {
			if err := o.Enqueue(context.Background(), nil, ins[i*n/2:(i+1)*n/2]); err != nil {
				t.Fatal(err)
			}
		}
		runUntil(t, os, func() bool { return srv.Count() >= n })
		// Run both a second more: a message left claimed, or sent twice,
		// shows now.
		again := time.Now()
		runUntil(t, os, func() bool { return srv.Count() > n || time.Since(again) > time.Second })
		if !queueEmpty(t, os[0]) {
			t.Error("messages left to send after every phone got one")
		}
		checkOnce(t, srv, n)
		t.Logf("instance a sent %d, b sent %d", snds[0].n.Load(), snds[1].n.Load())
	})
}

// TestReclaimLapsedLease: an instance dies holding claimed messages. A
// peer starting meanwhile leaves them alone while the lease runs, then
// takes them back and sends them, counted as reclaimed; every phone gets
// one message.
func TestReclaimLapsedLease(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		const n, held = 200, 40
		srv := twiliotest.New(testSID, testToken)
		defer srv.Close()
		os, _ := sharedOutboxes(t, driver, srv, n, "gridbell-dead", "gridbell-live")
		dead, live := os[0], os[1]
		dead.lease = 3 * time.Second
		live.lease = 3 * time.Second
		ctx := context.Background()
		// The dead instance claimed these and died before sending them:
		// no record, no release.
		claimSome(t, dead, n, held)
		reclaimed := func() float64 {
			return testutil.ToFloat64(smsTotal.WithLabelValues(string(event.KindOutage), "reclaimed"))
		}
		before := reclaimed()

		if err := live.resume(ctx); err != nil {
			t.Fatal(err)
		}
		var sending int
		live.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_messages WHERE status = 'sending' AND claimed_by = 'gridbell-dead'`).Scan(&sending)
		if sending != held {
			t.Fatalf("after a peer's start %d of the %d messages a live lease holds are still its own: resume took a live peer's messages", sending, held)
		}

		runUntil(t, []*Outbox{live}, func() bool { return srv.Count() >= n })
		checkOnce(t, srv, n)
		if got := reclaimed() - before; got != float64(held) {
			t.Errorf("reclaimed counter rose by %v, want %d", got, held)
		}
	})
}

// queueEmpty reports whether o's store holds nothing left to send.
func queueEmpty(t *testing.T, o *Outbox) bool {
	var left int
	if err := o.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM notify_messages WHERE status IN ('queued', 'held', 'sending')`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	return left == 0
}

// TestSharedPhoneLimit: two instances claiming at once for the same phones
// keep to sms.phone_hourly between them. Each phone has four balance_low
// messages (different accounts' references), two enqueued on each
// instance, and a limit of one an hour: each phone gets exactly one.
func TestSharedPhoneLimit(t *testing.T) {
	const n = 150
	srv := twiliotest.New(testSID, testToken)
	defer srv.Close()
	os, _ := sharedOutboxes(t, "postgres", srv, n, "gridbell-a", "gridbell-b")
	now := time.Now()
	for i, o := range os {
		o.cfg.PhoneHourly = 1
		var ins []event.Intent
		for a := range n {
			for r := range 2 {
				ref := fmt.Sprintf("BAL-%d-%d", i, r)
				ins = append(ins, event.Intent{Key: fmt.Sprintf("balance_low|%s|01%08d", ref, a), Kind: event.KindBalanceLow,
					Account: fmt.Sprintf("01%08d", a), Ref: ref, Grid: "G01", Vars: map[string]string{"balance": "18.50"},
					Priority: event.PriorityBilling, CreatedAt: now})
			}
		}
		if err := o.Enqueue(context.Background(), nil, ins); err != nil {
			t.Fatal(err)
		}
	}
	last, stable := -1, 0
	runUntil(t, os, func() bool {
		c := srv.Count()
		if c == last && c > 0 {
			stable++
		} else {
			last, stable = c, 0
		}
		return stable > 200 // 2 s without a send
	})
	seen, over := perPhone(srv)
	if len(seen) != n || over > 0 {
		t.Errorf("%d phones got a message, %d of them more than the hourly limit of 1; want %d phones, once each", len(seen), over, n)
	}
}
