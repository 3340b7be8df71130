package notify

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

// TestRun runs the concurrent dispatcher against the Twilio test server
// with throttling, server errors and slow answers, stops it mid-way and
// starts it again: every message goes out exactly once.
func TestRun(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		const n = 300
		srv := twiliotest.New(testSID, testToken)
		defer srv.Close()
		srv.FailNext(3, twiliotest.Fault{Status: 429, Code: 20429, Message: "Too Many Requests", RetryAfter: "0.05"})
		srv.FailNext(2, twiliotest.ServerError)
		srv.FailNext(5, twiliotest.Fault{Delay: 50 * time.Millisecond})
		db := storetest.Open(t, driver)
		cfg := crashConfig(srv.URL)
		cfg.Workers = 8
		cfg.Twilio.Rate = 2000
		snd, err := NewSender(cfg, t.TempDir(), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		o, err := NewOutbox(cfg, QuietHours{}, db, loadRegistry(t, db, n), snd, clock.Real{}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if err := o.Enqueue(context.Background(), nil, loadIntents(n, time.Now())); err != nil {
			t.Fatal(err)
		}
		run := func(until func() bool) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- o.Run(ctx) }()
			deadline := time.Now().Add(30 * time.Second)
			for !until() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		run(func() bool { return srv.Count() >= n/3 })
		var sending int
		db.QueryRow(`SELECT COUNT(*) FROM notify_messages WHERE status = 'sending'`).Scan(&sending)
		if sending != 0 {
			t.Errorf("%d messages left sending after a clean stop", sending)
		}
		// The 5xx retry waits a few seconds; let the retry be due now.
		db.Exec(`UPDATE notify_messages SET due_at = 0 WHERE status = 'queued'`)
		run(func() bool { return srv.Count() >= n })
		seen := map[string]int{}
		for _, m := range srv.Received() {
			seen[m.To]++
		}
		if len(seen) != n || srv.Count() != n {
			t.Errorf("received %d messages to %d phones, want %d once each", srv.Count(), len(seen), n)
		}
		st, err := o.Stats(context.Background(), "OMS-LOAD")
		if err != nil {
			t.Fatal(err)
		}
		if st.Notified != n {
			t.Errorf("notified %d, want %d", st.Notified, n)
		}
	})
}
