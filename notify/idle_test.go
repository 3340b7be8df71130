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

// An idle dispatcher sleeps until kicked, but still finds what no kick
// announced: intents written by another instance (whose Enqueue kicks only
// its own dispatcher) after this one went idle, and intents due later than
// they were written.
func TestIdleDispatcherFindsUnannouncedWork(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		const n = 20
		srv := twiliotest.New(testSID, testToken)
		defer srv.Close()
		db := storetest.Open(t, driver)
		cfg := crashConfig(srv.URL)
		reg := loadRegistry(t, db, 2*n)
		newOutbox := func() *Outbox {
			snd, err := NewSender(cfg, t.TempDir(), zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			o, err := NewOutbox(cfg, QuietHours{}, db, reg, snd, clock.Real{}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			return o
		}
		running, other := newOutbox(), newOutbox()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- running.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		waitSent := func(want int) {
			t.Helper()
			for deadline := time.Now().Add(30 * time.Second); srv.Count() < want && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if got := srv.Count(); got != want {
				t.Fatalf("sent %d, want %d", got, want)
			}
		}
		time.Sleep(hotFor + 200*time.Millisecond) // idle: past the start's hot spell
		ins := loadIntents(2*n, time.Now())
		if err := other.Enqueue(context.Background(), nil, ins[:n]); err != nil {
			t.Fatal(err)
		}
		waitSent(n)
		time.Sleep(hotFor + 200*time.Millisecond)
		later := ins[n:]
		for i := range later {
			later[i].NotBefore = time.Now().Add(1500 * time.Millisecond)
		}
		if err := other.Enqueue(context.Background(), nil, later); err != nil {
			t.Fatal(err)
		}
		waitSent(2 * n)
	})
}
