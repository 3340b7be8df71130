package notify

import (
	"context"
	"database/sql"
)

// cachedTx is a transaction whose queries are prepared once per
// connection for the life of the outbox: the dispatcher runs the same few
// statements thousands of times a second, and SQLite spends more on
// parsing them than on running them.
type cachedTx struct {
	*sql.Tx
	o      *Outbox
	stmts  map[string]*sql.Stmt
	unlock func()
}

// prepared returns q prepared on the database, preparing it on first use.
func (o *Outbox) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if s, ok := o.stmts.Load(q); ok {
		return s.(*sql.Stmt), nil
	}
	s, err := o.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := o.stmts.LoadOrStore(q, s); loaded {
		s.Close()
		return prev.(*sql.Stmt), nil
	}
	return s, nil
}

// begin starts a write transaction. On SQLite the dispatcher's writers
// (expand, claim, record) take turns on the store's write gate with the
// rules' commits: SQLite has one writer, and a writer that finds the lock
// taken sleeps in its busy handler for up to 100 ms at a time, which showed
// up as p99 latency. The rules' commits, which meter intake waits on, go
// first (store.DB.LockWrite): the dispatcher has its own pace.
func (o *Outbox) begin(ctx context.Context) (*cachedTx, error) {
	unlock := o.db.LockWrite(false)
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		unlock()
		return nil, err
	}
	return &cachedTx{Tx: tx, o: o, stmts: map[string]*sql.Stmt{}, unlock: unlock}, nil
}

func (c *cachedTx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if s, ok := c.stmts[q]; ok {
		return s, nil
	}
	ps, err := c.o.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	s := c.Tx.StmtContext(ctx, ps)
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
	err := c.Tx.Rollback()
	if c.unlock != nil {
		c.unlock()
		c.unlock = nil
	}
	return err
}
