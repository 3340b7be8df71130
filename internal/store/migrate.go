package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrSchemaNewer is returned by Migrate when the store holds migrations of a
// component that this binary does not know: a newer gridbell has upgraded
// the store, and running older code on it could corrupt what it wrote.
var ErrSchemaNewer = errors.New("the store's schema is newer than this gridbell")

// Migrate applies, in order, the statements of component that have not run
// yet. Statements are numbered by their position: append, never edit.
//
// All of a component's pending statements run in one transaction that
// first takes the store's migration lock (a PostgreSQL advisory lock, or
// SQLite's write lock), so instances started together on an empty database
// apply each statement once and none sees a half-migrated schema. A store
// whose schema is newer than stmts is refused with ErrSchemaNewer.
func (db *DB) Migrate(ctx context.Context, component string, stmts []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot migrate %s: %w", component, err)
	}
	defer tx.Rollback()
	if err := db.LockTx(ctx, tx, "schema_migrations"); err != nil {
		return fmt.Errorf("cannot migrate %s: %w", component, err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("cannot create schema_migrations: %w", err)
	}
	applied, err := appliedVersions(ctx, tx, component)
	if err != nil {
		return err
	}
	for v := range applied {
		if v > len(stmts) {
			return fmt.Errorf("cannot migrate %s: the store is at version %d, this gridbell knows versions up to %d (upgrade gridbell, or restore the store): %w",
				component, maxVersion(applied), len(stmts), ErrSchemaNewer)
		}
	}
	for i, stmt := range stmts {
		version := i + 1
		if applied[version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("cannot apply migration %s/%d: %w", component, version, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (component, version) VALUES ($1, $2)`,
			component, version); err != nil {
			return fmt.Errorf("cannot record migration %s/%d: %w", component, version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit migrations of %s: %w", component, err)
	}
	return nil
}

func appliedVersions(ctx context.Context, tx *sql.Tx, component string) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations WHERE component = $1`, component)
	if err != nil {
		return nil, fmt.Errorf("cannot read schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("cannot read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read schema_migrations: %w", err)
	}
	return applied, nil
}

func maxVersion(applied map[int]bool) int {
	m := 0
	for v := range applied {
		m = max(m, v)
	}
	return m
}

// LockTx takes the store-wide lock called name until tx ends: on
// PostgreSQL a transaction advisory lock, scoped to the current schema so
// that stores sharing a database do not wait for each other. On SQLite it
// does nothing: a write transaction there (the store opens them immediate)
// already excludes every other writer.
func (db *DB) LockTx(ctx context.Context, tx *sql.Tx, name string) error {
	if !db.Postgres() {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1), hashtext(current_schema()))`, name); err != nil {
		return fmt.Errorf("cannot take lock %s: %w", name, err)
	}
	return nil
}

// TryLockTx is LockTx that does not wait: it reports false when another
// transaction holds the lock. On SQLite it always reports true.
func (db *DB) TryLockTx(ctx context.Context, tx *sql.Tx, name string) (bool, error) {
	if !db.Postgres() {
		return true, nil
	}
	var ok bool
	if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext(current_schema()))`, name).Scan(&ok); err != nil {
		return false, fmt.Errorf("cannot take lock %s: %w", name, err)
	}
	return ok, nil
}
