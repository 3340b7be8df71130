package store

import (
	"context"
	"fmt"
	"time"
)

// NowSQL is an SQL expression for the store's own time in unix
// nanoseconds. Instances sharing a store judge leases and claims by this
// one clock, not by their hosts' clocks, which may be off by any amount
// (or stand still while a process is frozen). On PostgreSQL it is the
// server's clock_timestamp() (the time of the call, not of the
// transaction's start); on SQLite, used by one process, it is that
// process's host clock.
func (db *DB) NowSQL() string {
	if db.Postgres() {
		return `CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT)`
	}
	return `CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER)`
}

// Now reads the store's clock (NowSQL).
func (db *DB) Now(ctx context.Context) (time.Time, error) {
	var ns int64
	if err := db.QueryRowContext(ctx, `SELECT `+db.NowSQL()).Scan(&ns); err != nil {
		return time.Time{}, fmt.Errorf("cannot read the store's clock: %w", err)
	}
	return time.Unix(0, ns), nil
}
