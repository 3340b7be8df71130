package notify

import (
	"context"
	"database/sql"
)

// cachedTx is a transaction that prepares each query once: the expander
// and the recorder run the same few statements hundreds of times a batch,
// and SQLite spends more on parsing them than on running them.
type cachedTx struct {
	*sql.Tx
	stmts map[string]*sql.Stmt
}

func beginCached(ctx context.Context, db *sql.DB) (*cachedTx, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &cachedTx{Tx: tx, stmts: map[string]*sql.Stmt{}}, nil
}

func (c *cachedTx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if s, ok := c.stmts[q]; ok {
		return s, nil
	}
	s, err := c.Tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.stmts[q] = s
	return s, nil
}

// ExecContext runs q as a prepared statement.
func (c *cachedTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	s, err := c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

// QueryRowContext runs q as a prepared statement.
func (c *cachedTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	s, err := c.stmt(ctx, q)
	if err != nil {
		return c.Tx.QueryRowContext(ctx, q, args...) // reports the same error
	}
	return s.QueryRowContext(ctx, args...)
}

// Rollback ends the transaction, if still open, and closes the statements.
func (c *cachedTx) Rollback() error {
	for _, s := range c.stmts {
		s.Close()
	}
	return c.Tx.Rollback()
}
