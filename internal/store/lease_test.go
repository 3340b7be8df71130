package store_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// TestLease: a live holder keeps the lease from a second instance, which
// is told who holds it; a clean stop hands it over at once; a holder that
// dies without a word loses it when it expires, and learns so if it comes
// back.
func TestLease(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			cfg := storetest.Config(t, driver)
			dir := t.TempDir()
			ctx := context.Background()
			open := func() *store.DB {
				db, err := store.Open(ctx, cfg, dir)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
			const ttl = 1500 * time.Millisecond
			dbA, dbB := open(), open()
			a, err := store.AcquireLease(ctx, dbA, "run", store.LeaseHolder("host-a"), ttl)
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			ran := make(chan error, 1)
			go func() { ran <- a.Run(runCtx) }()

			_, err = store.AcquireLease(ctx, dbB, "run", store.LeaseHolder("host-b"), ttl)
			var held *store.HeldError
			if !errors.As(err, &held) || held.Holder != a.Holder() || !strings.Contains(err.Error(), "host-a") {
				t.Fatalf("second holder beside a live one: %v, want a HeldError naming %s", err, a.Holder())
			}

			stop()
			if err := <-ran; err != nil {
				t.Fatalf("Run at stop = %v", err)
			}
			b, err := store.AcquireLease(ctx, dbB, "run", store.LeaseHolder("host-b"), ttl)
			if err != nil {
				t.Fatalf("after a clean stop: %v", err)
			}

			// b dies: it never renews. c waits for the lease to expire.
			c, err := store.AcquireLease(ctx, open(), "run", store.LeaseHolder("host-c"), ttl)
			if err != nil {
				t.Fatalf("after the holder died: %v", err)
			}
			if err := b.Run(ctx); !errors.Is(err, store.ErrLeaseLost) {
				t.Errorf("the dead holder back: Run = %v, want ErrLeaseLost", err)
			}
			if err := c.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLeaseUnrenewable: a holder whose store refuses every renewal (its
// connections closed; not one that hangs) is told of each failed renewal,
// and once none has succeeded for the lease's time to live, Run gives the
// lease up as lost (another holder may have it by then) instead of trying
// for ever.
func TestLeaseUnrenewable(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t, "postgres")
	db, err := store.Open(ctx, cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 900 * time.Millisecond
	l, err := store.AcquireLease(ctx, db, "unrenewable", store.LeaseHolder("host-a"), ttl)
	if err != nil {
		t.Fatal(err)
	}
	var failed atomic.Int64
	l.OnRenewError = func(error) { failed.Add(1) }
	db.Close() // the store is gone for this holder
	ran := make(chan error, 1)
	go func() { ran <- l.Run(ctx) }()
	select {
	case err := <-ran:
		if !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("Run with a store gone = %v, want ErrLeaseLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run goes on renewing a lease it cannot renew")
	}
	if n := failed.Load(); n < 2 {
		t.Errorf("OnRenewError told of %d failed renewals, want every one (at least 2 in a time to live)", n)
	}
}
