package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// bulkSink writes intents with multi-row INSERTs into a table of its own:
// -sink bulk shows what the rules sustain without the outbox's own work
// (its expansion into messages and its indexes).
type bulkSink struct{ pg bool }

func newBulkSink(ctx context.Context, db *store.DB) (*bulkSink, error) {
	err := db.Migrate(ctx, "storm_bench", []string{`CREATE TABLE storm_outbox (key TEXT PRIMARY KEY, kind TEXT NOT NULL,
		account TEXT NOT NULL, grid TEXT NOT NULL, to_phone TEXT NOT NULL, ref TEXT NOT NULL, vars TEXT NOT NULL,
		priority INTEGER NOT NULL, not_before BIGINT NOT NULL, created_at BIGINT NOT NULL)`})
	return &bulkSink{pg: db.Postgres()}, err
}

const bulkCols = 10

func (s *bulkSink) Enqueue(ctx context.Context, tx *sql.Tx, intents []event.Intent) error {
	rows := 32 // the SQLite driver binds in time quadratic in a statement's parameters
	if s.pg {
		rows = 1000
	}
	var full *sql.Stmt
	args := make([]any, 0, rows*bulkCols)
	for len(intents) > 0 {
		n := min(rows, len(intents))
		args = args[:0]
		for _, in := range intents[:n] {
			vars, _ := json.Marshal(in.Vars)
			var nb int64
			if !in.NotBefore.IsZero() {
				nb = in.NotBefore.UnixNano()
			}
			args = append(args, in.Key, string(in.Kind), in.Account, in.Grid, in.To, in.Ref, string(vars), int(in.Priority), nb, in.CreatedAt.UnixNano())
		}
		var err error
		if n == rows {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, bulkSQL(rows)); err != nil {
					return err
				}
				defer full.Close()
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, bulkSQL(n), args...)
		}
		if err != nil {
			return fmt.Errorf("cannot enqueue intents: %w", err)
		}
		intents = intents[n:]
	}
	return nil
}

func bulkSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO storm_outbox (key, kind, account, grid, to_phone, ref, vars, priority, not_before, created_at) VALUES `)
	b.WriteString(store.Values(true, rows, bulkCols))
	b.WriteString(` ON CONFLICT (key) DO NOTHING`)
	return b.String()
}
