package care

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/gridbell/gridbell/internal/store"
)

// migrations are care's tables. Append, never edit.
var migrations = []string{
	// One customer's interruption in one outage record: times are Unix ns,
	// end_ns 0 while open; open lists the meters still dark.
	`CREATE TABLE care_interruptions (outage TEXT NOT NULL, account TEXT NOT NULL, grid TEXT NOT NULL,
		feeder TEXT NOT NULL, area TEXT NOT NULL, class TEXT NOT NULL, planned INTEGER NOT NULL,
		start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL, open TEXT NOT NULL, reported INTEGER NOT NULL,
		sms_ns BIGINT NOT NULL, PRIMARY KEY (outage, account))`,
	// The reports read a period's rows from this index alone.
	`CREATE INDEX care_interruptions_report ON care_interruptions (start_ns, grid, feeder, area, planned, end_ns, sms_ns, account)`,
	`CREATE INDEX care_interruptions_account ON care_interruptions (account, start_ns)`,
	// Hotline lookups: outage is the one the customer was in, '' for none.
	`CREATE TABLE care_calls (account TEXT NOT NULL, at_ns BIGINT NOT NULL, outage TEXT NOT NULL,
		PRIMARY KEY (account, at_ns))`,
	`CREATE INDEX care_calls_outage ON care_calls (outage, account)`,
	`CREATE INDEX care_calls_at ON care_calls (at_ns)`,
	// The projection's cursors.
	`CREATE TABLE care_state (name TEXT PRIMARY KEY, val BIGINT NOT NULL)`,
	// Follow-up lists sent to grid managers, once per outage and grid.
	`CREATE TABLE care_followups (outage TEXT NOT NULL, grid TEXT NOT NULL, at_ns BIGINT NOT NULL,
		PRIMARY KEY (outage, grid))`,
	// The daily rollup of closed interruptions (daily.go), and each
	// sustained interruption's number within the frequent-outage window
	// (nth): the reports read a month without reading its rows.
	`CREATE TABLE care_daily (day BIGINT NOT NULL, grid TEXT NOT NULL, feeder TEXT NOT NULL, area TEXT NOT NULL,
		planned INTEGER NOT NULL, sustained BIGINT NOT NULL, ns BIGINT NOT NULL, momentary BIGINT NOT NULL,
		affected BIGINT NOT NULL, notified BIGINT NOT NULL, PRIMARY KEY (day, grid, feeder, area, planned))`,
	`ALTER TABLE care_interruptions ADD COLUMN nth INTEGER NOT NULL DEFAULT 0`,
	`CREATE INDEX care_interruptions_open ON care_interruptions (end_ns, start_ns)`,
	`CREATE INDEX care_interruptions_nth ON care_interruptions (nth, start_ns, grid, feeder, area, account)`,
	// The same by feeder alone, for the reports by grid and by feeder: a
	// province's day has a few hundred feeders and ten thousand areas.
	`CREATE TABLE care_daily_feeder (day BIGINT NOT NULL, grid TEXT NOT NULL, feeder TEXT NOT NULL,
		planned INTEGER NOT NULL, sustained BIGINT NOT NULL, ns BIGINT NOT NULL, momentary BIGINT NOT NULL,
		affected BIGINT NOT NULL, notified BIGINT NOT NULL, PRIMARY KEY (day, grid, feeder, planned))`,
}

var interruptionCols = []string{"outage", "account", "grid", "feeder", "area", "class", "planned",
	"start_ns", "end_ns", "open", "reported", "sms_ns", "nth"}

func setState(ctx context.Context, tx *sql.Tx, name string, v int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO care_state (name, val) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET val = excluded.val`, name, v)
	if err != nil {
		return fmt.Errorf("cannot write care_state: %w", err)
	}
	return nil
}

func getState(ctx context.Context, db *store.DB, name string) (int64, error) {
	var v int64
	err := db.QueryRowContext(ctx, `SELECT val FROM care_state WHERE name = $1`, name).Scan(&v)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read care_state: %w", err)
	}
	return v, nil
}
