package rules

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// tableSink is a real IntentSink: it inserts intents into a table in the
// rules' transaction. A key it already holds fails the transaction, so a
// repeated decision shows up in tests (notify's outbox would hide it).
type tableSink struct{}

var sinkMigrations = []string{
	`CREATE TABLE test_outbox (id BIGINT NOT NULL, ikey TEXT PRIMARY KEY, kind TEXT NOT NULL, account TEXT NOT NULL,
		grid TEXT NOT NULL, to_phone TEXT NOT NULL, ref TEXT NOT NULL, vars TEXT NOT NULL, priority INTEGER NOT NULL,
		not_before TEXT NOT NULL)`,
}

func openSink(t testing.TB, db *store.DB) tableSink {
	t.Helper()
	if err := db.Migrate(context.Background(), "rules_test", sinkMigrations); err != nil {
		t.Fatal(err)
	}
	return tableSink{}
}

func (tableSink) Enqueue(ctx context.Context, tx *sql.Tx, intents []event.Intent) error {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM test_outbox`).Scan(&n); err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO test_outbox (id, ikey, kind, account, grid, to_phone, ref, vars, priority, not_before)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, in := range intents {
		vars, _ := json.Marshal(in.Vars)
		nb := ""
		if !in.NotBefore.IsZero() {
			nb = in.NotBefore.UTC().Format("2006-01-02T15:04:05Z")
		}
		n++
		if _, err := stmt.ExecContext(ctx, n, in.Key, string(in.Kind), in.Account, in.Grid, in.To, in.Ref, string(vars), int(in.Priority), nb); err != nil {
			return fmt.Errorf("cannot insert intent %s: %w", in.Key, err)
		}
	}
	return nil
}

// sent is one intent as the test outbox holds it.
type sent struct {
	Kind      string            `json:"kind"`
	Account   string            `json:"account,omitempty"`
	To        string            `json:"to,omitempty"`
	Ref       string            `json:"ref"`
	Priority  int               `json:"priority,omitempty"`
	NotBefore string            `json:"not_before,omitempty"`
	Vars      map[string]string `json:"vars,omitempty"`
}

func readOutbox(t testing.TB, db *store.DB) []sent {
	t.Helper()
	rows, err := db.Query(`SELECT kind, account, to_phone, ref, priority, not_before, vars FROM test_outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []sent
	for rows.Next() {
		var s sent
		var vars string
		if err := rows.Scan(&s.Kind, &s.Account, &s.To, &s.Ref, &s.Priority, &s.NotBefore, &vars); err != nil {
			t.Fatal(err)
		}
		json.Unmarshal([]byte(vars), &s.Vars)
		out = append(out, s)
	}
	return out
}
