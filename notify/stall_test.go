package notify

import (
	"context"
	"testing"
	"time"

	"github.com/gridbell/gridbell/notify/twiliotest"
)

// aheadClock runs d ahead of the wall clock, as a host whose clock is off.
type aheadClock struct{ d time.Duration }

func (c aheadClock) Now() time.Time { return time.Now().Add(c.d) }

// checkRows fails unless every message of o's store was sent once, and its
// row names a message srv received: a row the resumed instance recorded
// over its successor's would name a second one, or none.
func checkRows(t *testing.T, o *Outbox, srv *twiliotest.Server, n int) {
	t.Helper()
	sids := map[string]string{}
	for _, m := range srv.Received() {
		sids[m.SID] = m.To
	}
	rows, err := o.db.QueryContext(context.Background(), `SELECT phone, status, provider_id FROM notify_messages`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := 0
	for rows.Next() {
		var phone, status, sid string
		if err := rows.Scan(&phone, &status, &sid); err != nil {
			t.Fatal(err)
		}
		got++
		if status != StatusSent || sids[sid] != phone {
			t.Errorf("message to %s is %s with provider id %q, which the provider holds for %q", phone, status, sid, sids[sid])
		}
	}
	if got != n {
		t.Errorf("%d messages in the outbox, want %d", got, n)
	}
}

// claimSome enqueues n messages on o and claims held of them, as o's
// dispatcher does before it hands them to its workers.
func claimSome(t *testing.T, o *Outbox, n, held int) []claimed {
	t.Helper()
	ctx := context.Background()
	if err := o.Enqueue(ctx, nil, loadIntents(n, time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := o.expand(ctx); err != nil {
		t.Fatal(err)
	}
	cs, err := o.claim(ctx, held)
	if err != nil || len(cs) != held {
		t.Fatalf("claim = %d messages, %v; want %d", len(cs), err, held)
	}
	return cs
}

// sendClaimed has o's workers deliver cs and o record the outcomes, as o
// goes on with claims it took before.
func sendClaimed(t *testing.T, o *Outbox, cs []claimed) {
	t.Helper()
	ctx := context.Background()
	outs := make([]outcome, len(cs))
	for i, c := range cs {
		outs[i] = o.deliver(ctx, c, nil)
	}
	if err := o.record(ctx, outs); err != nil {
		t.Fatal(err)
	}
}

// settle runs os a second more (a message left claimed, or sent twice,
// shows then) and checks every one of n messages went once, recorded in
// o's store as the message srv received.
func settle(t *testing.T, os []*Outbox, o *Outbox, srv *twiliotest.Server, n int) {
	t.Helper()
	seen, twice := perPhone(srv)
	t.Logf("before the last second: %d messages to %d phones, %d phones twice", srv.Count(), len(seen), twice)
	again := time.Now()
	runUntil(t, os, func() bool { return time.Since(again) > time.Second })
	checkOnce(t, srv, n)
	checkRows(t, o, srv, n)
}

// TestStalledClaim: an instance claims messages and stalls (a GC pause, a
// frozen VM) past their lease; its peer takes them back and sends them.
// When the stalled instance goes on and hands its old claims to its
// workers, it sends none of them and records nothing over the peer's sends.
// PostgreSQL only: a SQLite store has one process, which does not check its
// claims before sending (fence).
func TestStalledClaim(t *testing.T) {
	const n, held = 100, 40
	srv := twiliotest.New(testSID, testToken)
	defer srv.Close()
	os, _ := sharedOutboxes(t, "postgres", srv, n, "gridbell-stalled", "gridbell-peer")
	stalled, peer := os[0], os[1]
	stalled.lease, peer.lease = 2*time.Second, 2*time.Second
	cs := claimSome(t, stalled, n, held)
	time.Sleep(stalled.lease + stalled.lease/2) // the stall
	runUntil(t, []*Outbox{peer}, func() bool { return srv.Count() >= n })
	// The stalled instance goes on where it stopped.
	sendClaimed(t, stalled, cs)
	settle(t, os, peer, srv, n)
}

// TestClockAhead: an instance whose clock runs 30 s ahead starts beside a
// peer that holds claimed messages under a live lease. It leaves them to
// the peer, which sends them; every phone gets one message.
func TestClockAhead(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		const n, held = 100, 40
		srv := twiliotest.New(testSID, testToken)
		defer srv.Close()
		os, _ := sharedOutboxes(t, driver, srv, n, "gridbell-peer", "gridbell-ahead")
		peer, ahead := os[0], os[1]
		ahead.clk = aheadClock{30 * time.Second}
		cs := claimSome(t, peer, n, held)
		// The instance ahead starts and sends what is free, and a second
		// more (a lease judged on its clock would have lapsed 15 s ago).
		var all time.Time
		runUntil(t, []*Outbox{ahead}, func() bool {
			if all.IsZero() && srv.Count() >= n-held {
				all = time.Now()
			}
			return srv.Count() >= n || !all.IsZero() && time.Since(all) > time.Second
		})
		// The peer's workers deliver its claims, well within their lease.
		sendClaimed(t, peer, cs)
		settle(t, os, peer, srv, n)
	})
}
