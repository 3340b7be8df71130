package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// singleLease names the lease a single-process gridbell holds on its store
// while it runs, and singleLeaseTTL is how long it outlives the holder's
// last heartbeat: a restart after a crash waits at most that long.
const (
	singleLease    = "single-process"
	singleLeaseTTL = 15 * time.Second
)

// takeLease makes sure no other single-process gridbell runs on this
// store: two would each handle every event and send each SMS twice. The
// lease is renewed while the service runs (the first component, so it is
// released last) and released on stop; the CLI's commands beside a running
// service (contacts import, deadletter) take none.
func (a *App) takeLease(ctx context.Context) error {
	l, err := store.AcquireLease(ctx, a.DB, singleLease, store.LeaseHolder(a.cfg.Cluster.Instance), singleLeaseTTL)
	var held *store.HeldError
	if errors.As(err, &held) {
		return fmt.Errorf("cannot start: another gridbell is running on this store, and two single-process instances would send every SMS twice; stop it first: %w", held)
	}
	if err != nil {
		return err
	}
	a.Lease = l
	l.OnRenewError = func(err error) { a.log.Warn().Err(err).Msg("cannot renew the single-process lease; retrying") }
	a.holdLease(l)
	if others, err := store.LiveHolders(ctx, a.DB, "instance:%"); err != nil {
		return err
	} else if len(others) > 0 {
		return fmt.Errorf("cannot start in single-process mode: instances in distributed mode run on this store (%s); every SMS would go twice: stop them, or start this one with cluster.enabled", strings.Join(others, ", "))
	}
	a.log.Info().Str("holder", l.Holder()).Msg("holding the store's single-process lease")
	return nil
}

// holdLease renews l from now on: through the rest of the start, which a
// large contacts import or rules state outlasts the lease's time to live
// with, and while the service runs (the "lease" component, the first, so
// it stops last), until the stop or a failed start releases it.
func (a *App) holdLease(l *store.Lease) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var result error
	finish := func(err error, ended bool) error {
		once.Do(func() {
			stop()
			if !ended {
				err = <-done // Run releases the lease once ctx is done
			}
			result = err
		})
		return result
	}
	a.closers = append(a.closers, func() error { return finish(nil, false) })
	a.components = append(a.components, component{"lease", func(cctx context.Context) error {
		select {
		case <-cctx.Done():
			return finish(nil, false)
		case err := <-done: // lost
			return finish(err, true)
		}
	}})
}
