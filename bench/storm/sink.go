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
	rows := 100 // "?" on SQLite binds in time linear in the parameters
	if s.pg {
		rows = 1000
	}
	sqlFor := func(rows int) string { return bulkSQL(s.pg, rows) }
	err := store.ExecBatches(ctx, tx, len(intents), rows, sqlFor, func(args []any, from, to int) ([]any, error) {
		for _, in := range intents[from:to] {
			vars, err := json.Marshal(in.Vars)
			if err != nil {
				return nil, err
			}
			var nb int64
			if !in.NotBefore.IsZero() {
				nb = in.NotBefore.UnixNano()
			}
			args = append(args, in.Key, string(in.Kind), in.Account, in.Grid, in.To, in.Ref, string(vars), int(in.Priority), nb, in.CreatedAt.UnixNano())
		}
		return args, nil
	})
	if err != nil {
		return fmt.Errorf("cannot enqueue intents: %w", err)
	}
	return nil
}

func bulkSQL(pg bool, rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO storm_outbox (key, kind, account, grid, to_phone, ref, vars, priority, not_before, created_at) VALUES `)
	b.WriteString(store.Values(pg, rows, bulkCols))
	b.WriteString(` ON CONFLICT (key) DO NOTHING`)
	return b.String()
}
