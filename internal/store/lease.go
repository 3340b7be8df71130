package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"
)

// leaseMigrations are the store's own tables.
var leaseMigrations = []string{
	`CREATE TABLE store_leases (
		name TEXT PRIMARY KEY, holder TEXT NOT NULL, heartbeat BIGINT NOT NULL, expires BIGINT NOT NULL)`,
}

// ErrLeaseLost is returned by Lease.Run when another holder took the lease:
// this one missed its renewals for longer than the lease lasts.
var ErrLeaseLost = errors.New("lease lost to another holder")

// HeldError is returned by AcquireLease when a live holder has the lease.
type HeldError struct {
	Name      string
	Holder    string
	Heartbeat time.Time // its last renewal
	Expires   time.Time
	Now       time.Time // the store's time when it was read: the times above are on its clock
}

func (e *HeldError) Error() string {
	now := e.Now
	if now.IsZero() {
		now = time.Now()
	}
	return fmt.Sprintf("lease %s is held by %s (last heartbeat %s ago, expires in %s)", e.Name, e.Holder,
		now.Sub(e.Heartbeat).Round(time.Second), e.Expires.Sub(now).Round(time.Second))
}

// Lease is one named lease row in the store: a holder, its last heartbeat
// and an expiry. The holder renews it every third of its time to live; a
// holder that dies stops renewing and the lease lapses. Times come from
// the store's clock (DB.NowSQL), so the hosts' clocks need not agree.
type Lease struct {
	db     *DB
	name   string
	holder string
	ttl    time.Duration

	// OnRenewError, when set before Run, is told of each renewal the
	// store refused (Run tries again at the next period).
	OnRenewError func(error)
}

// LeaseHolder names this process as a lease holder: the instance name,
// the process id and a random part, so no two processes ever share it.
func LeaseHolder(instance string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("%s pid %d", instance, os.Getpid())
	}
	return fmt.Sprintf("%s pid %d #%x", instance, os.Getpid(), b)
}

// AcquireLease takes the lease called name for holder. When another
// holder has it, AcquireLease watches the lease for up to one renewal
// period: a holder that renews it meanwhile is alive, and the lease is
// refused with a *HeldError; one that does not (a crash) is waited for
// until the lease expires, and then taken. So a second instance beside a
// live one is refused within ttl/3, and a restart after SIGKILL starts
// within ttl.
func AcquireLease(ctx context.Context, db *DB, name, holder string, ttl time.Duration) (*Lease, error) {
	if err := db.Migrate(ctx, "store", leaseMigrations); err != nil {
		return nil, err
	}
	l := &Lease{db: db, name: name, holder: holder, ttl: ttl}
	var seen *HeldError
	for {
		held, err := l.tryAcquire(ctx)
		if err != nil {
			return nil, err
		}
		if held == nil {
			return l, nil
		}
		if seen != nil && (held.Holder != seen.Holder || !held.Heartbeat.Equal(seen.Heartbeat)) {
			return nil, held
		}
		seen = held
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cannot take %w: %w", held, ctx.Err())
		case <-time.After(min(held.Expires.Sub(held.Now)+10*time.Millisecond, l.renewEvery()+l.renewEvery()/4)):
		}
	}
}

func (l *Lease) renewEvery() time.Duration { return l.ttl / 3 }

// tryAcquire takes the lease if it is free, lapsed or already this
// holder's, and otherwise returns who holds it.
func (l *Lease) tryAcquire(ctx context.Context) (*HeldError, error) {
	now := l.db.NowSQL()
	res, err := l.db.ExecContext(ctx, `INSERT INTO store_leases (name, holder, heartbeat, expires) VALUES ($1, $2, `+now+`, `+now+` + $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, heartbeat = excluded.heartbeat, expires = excluded.expires
		WHERE store_leases.expires < excluded.heartbeat OR store_leases.holder = $2`,
		l.name, l.holder, int64(l.ttl))
	if err != nil {
		return nil, fmt.Errorf("cannot take lease %s: %w", l.name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return nil, err
	}
	var h HeldError
	var hb, exp, at int64
	err = l.db.QueryRowContext(ctx, `SELECT holder, heartbeat, expires, `+now+` FROM store_leases WHERE name = $1`, l.name).Scan(&h.Holder, &hb, &exp, &at)
	if err != nil {
		return nil, fmt.Errorf("cannot read lease %s: %w", l.name, err)
	}
	h.Name, h.Heartbeat, h.Expires, h.Now = l.name, time.Unix(0, hb), time.Unix(0, exp), time.Unix(0, at)
	return &h, nil
}

// Holder returns the name this lease is held under.
func (l *Lease) Holder() string { return l.holder }

// Run renews the lease until ctx is done, then releases it. It returns
// ErrLeaseLost if another holder took it meanwhile, or if no renewal
// succeeded for as long as the lease lasts (the store was unreachable: by
// then another holder may have taken it). A renewal the store refuses is
// tried again at the next period and reported to OnRenewError, if set.
func (l *Lease) Run(ctx context.Context) error {
	t := time.NewTicker(l.renewEvery())
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return l.Release(context.WithoutCancel(ctx))
		case <-t.C:
		}
		now := l.db.NowSQL()
		res, err := l.db.ExecContext(ctx, `UPDATE store_leases SET heartbeat = `+now+`, expires = `+now+` + $1 WHERE name = $2 AND holder = $3`,
			int64(l.ttl), l.name, l.holder)
		var n int64
		if err == nil {
			n, err = res.RowsAffected()
		}
		switch {
		case err == nil && n == 0:
			return fmt.Errorf("cannot renew lease %s: %w", l.name, ErrLeaseLost)
		case err == nil:
			renewed = time.Now()
			continue
		case ctx.Err() != nil:
			continue // stopping: Release follows
		}
		if l.OnRenewError != nil {
			l.OnRenewError(err)
		}
		if time.Since(renewed) >= l.ttl {
			return fmt.Errorf("cannot renew lease %s for %s (%v): %w", l.name, l.ttl, err, ErrLeaseLost)
		}
	}
}

// Release gives the lease up, if this holder still has it, so that the
// next holder need not wait for it to expire.
func (l *Lease) Release(ctx context.Context) error {
	if _, err := l.db.ExecContext(ctx, `DELETE FROM store_leases WHERE name = $1 AND holder = $2`, l.name, l.holder); err != nil {
		return fmt.Errorf("cannot release lease %s: %w", l.name, err)
	}
	return nil
}

// LiveHolders returns the holders of the current (unexpired) leases whose
// names match the SQL LIKE pattern like.
func LiveHolders(ctx context.Context, db *DB, like string) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT holder FROM store_leases WHERE name LIKE $1 AND expires > `+db.NowSQL()+` ORDER BY name`, like)
	if err != nil {
		return nil, fmt.Errorf("cannot read leases: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}
