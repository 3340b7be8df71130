package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	a.closers = append(a.closers, func() error { return l.Release(context.Background()) })
	if others, err := store.LiveHolders(ctx, a.DB, "instance:%"); err != nil {
		return err
	} else if len(others) > 0 {
		return fmt.Errorf("cannot start in single-process mode: instances in distributed mode run on this store (%s); every SMS would go twice: stop them, or start this one with cluster.enabled", strings.Join(others, ", "))
	}
	a.components = append(a.components, component{"lease", l.Run})
	a.log.Info().Str("holder", l.Holder()).Msg("holding the store's single-process lease")
	return nil
}
