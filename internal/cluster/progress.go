package cluster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// RulesLease names the store lease held by the one instance that runs the
// rules in distributed mode.
const RulesLease = "cluster-rules"

// ErrFenced fails a rules commit of an instance that no longer holds the
// rules lease: another instance took it, loaded the state and consumes the
// meter topic from the offsets stored with it.
var ErrFenced = fmt.Errorf("rules commit fenced: %w", store.ErrLeaseLost)

var migrations = []string{
	`CREATE TABLE cluster_offsets (
		topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset BIGINT NOT NULL,
		PRIMARY KEY (topic, part))`,
	`CREATE TABLE cluster_commits (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)`,
	`INSERT INTO cluster_commits (id, n) VALUES (1, 0)`,
	// The contacts_file an instance imported at start, last (contacts.go).
	`CREATE TABLE cluster_contacts_file (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, mtime BIGINT NOT NULL,
		instance TEXT NOT NULL, imported BIGINT NOT NULL)`,
	// Each instance's persistent MQTT session, while it may hold a share of
	// the messages (sessions.go).
	`CREATE TABLE cluster_mqtt_sessions (instance TEXT PRIMARY KEY, client_id TEXT NOT NULL)`,
}

// Migrate creates the cluster's tables.
func Migrate(ctx context.Context, db *store.DB) error {
	return db.Migrate(ctx, "cluster", migrations)
}

// Offsets returns, per partition of topic, the next offset the rules have
// not applied (stored with their state).
func Offsets(ctx context.Context, db *store.DB, topic string) (map[int32]int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT part, next_offset FROM cluster_offsets WHERE topic = $1`, topic)
	if err != nil {
		return nil, fmt.Errorf("cannot read the meter topic's stored offsets: %w", err)
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var p int32
		var o int64
		if err := rows.Scan(&p, &o); err != nil {
			return nil, err
		}
		out[p] = o
	}
	return out, rows.Err()
}

// Commits returns how many rules transactions have committed: an instance
// that does not run the rules refreshes its copy when it moves.
func Commits(ctx context.Context, db *store.DB) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, `SELECT n FROM cluster_commits WHERE id = 1`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("cannot read the rules commit count: %w", err)
	}
	return n, nil
}

// fenceIdle is how long a rules commit may sit idle between its statements
// before PostgreSQL ends it (see Fence). A live holder sends its
// statements back to back, milliseconds apart; a lease lasts 15 s.
const fenceIdle = 5 * time.Second

// Fence returns the check every rules commit of holder makes (rules.Fence):
// in the same transaction it reads the rules lease FOR SHARE (a takeover's
// update waits for the commit, and a commit after a takeover fails with
// ErrFenced), stores the consumed offsets of topic, and counts the commit.
func Fence(topic, holder string) func(ctx context.Context, tx *sql.Tx, offsets map[int32]int64) error {
	return func(ctx context.Context, tx *sql.Tx, offsets map[int32]int64) error {
		// The row lock below lasts to the end of the commit: a holder frozen
		// inside it (SIGSTOP, a paused VM) would keep every takeover waiting
		// until it woke. PostgreSQL ends a transaction left idle past
		// fenceIdle, so the lock goes with it and the takeover proceeds;
		// the frozen holder's commit then fails when it wakes.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`SET LOCAL idle_in_transaction_session_timeout = %d`, fenceIdle.Milliseconds())); err != nil {
			return fmt.Errorf("cannot bound the rules commit's idle time: %w", err)
		}
		var h string
		err := tx.QueryRowContext(ctx, `SELECT holder FROM store_leases WHERE name = $1 FOR SHARE`, RulesLease).Scan(&h)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && h != holder) {
			return ErrFenced
		}
		if err != nil {
			return fmt.Errorf("cannot check the rules lease: %w", err)
		}
		for p, o := range offsets {
			if _, err := tx.ExecContext(ctx, `INSERT INTO cluster_offsets (topic, part, next_offset) VALUES ($1, $2, $3)
				ON CONFLICT (topic, part) DO UPDATE SET next_offset = excluded.next_offset`, topic, p, o); err != nil {
				return fmt.Errorf("cannot store meter topic offsets: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE cluster_commits SET n = n + 1 WHERE id = 1`); err != nil {
			return fmt.Errorf("cannot count the rules commit: %w", err)
		}
		return nil
	}
}

// LiveInstances counts the instances whose instance:<name> lease is
// current on the store's clock: the processes of the cluster that are
// alive now.
func LiveInstances(ctx context.Context, db *store.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM store_leases WHERE name LIKE 'instance:%' AND expires > `+db.NowSQL()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("cannot count live instances: %w", err)
	}
	return n, nil
}
