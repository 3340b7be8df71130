package rules

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// The feed is what the rules commit, read back for projections of their
// own (internal/care): outage records and meter changes, read from the
// store, never from the engine's memory, so they never take the writer's
// lock and work on any instance in distributed mode.

// Record is an outage record as the rules stored it.
type Record struct {
	ID          string     `json:"id"`
	Aliases     []string   `json:"aliases,omitempty"`
	Kind        string     `json:"kind"`
	Source      string     `json:"source"`
	Status      string     `json:"status"`
	Areas       []string   `json:"areas,omitempty"`
	Feeders     []string   `json:"feeders,omitempty"`
	Meters      []string   `json:"meters,omitempty"`
	Start       *time.Time `json:"start,omitempty"`
	RestoredAt  *time.Time `json:"restored_at,omitempty"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
	ReportedOut []string   `json:"reported_out,omitempty"`
	Created     time.Time  `json:"created"`
	Seq         int64      `json:"seq"`
}

// Live reports whether the record is active or scheduled.
func (r *Record) Live() bool { return r.Status == statusActive || r.Status == statusScheduled }

// Merged reports whether the record was absorbed into another (its id is
// an alias of that one now).
func (r *Record) Merged() bool { return r.Status == statusMerged }

// RecordStamp is a record's cheap signature: its status and the version
// of the commit that last wrote it (every write of a record stores a new
// one), read without the record's stored form.
type RecordStamp struct {
	ID     string
	Seq    int64
	Status string
	Ver    int64
}

// RecordStamps lists the stamps of the records that are live, or newer
// than seq: what a follower compares to find the records that changed.
func RecordStamps(ctx context.Context, db *store.DB, seq int64) ([]RecordStamp, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, seq, status, ver FROM rules_outages
		WHERE status IN ('active', 'scheduled') OR seq > $1`, seq)
	if err != nil {
		return nil, fmt.Errorf("cannot read outage records: %w", err)
	}
	defer rows.Close()
	var out []RecordStamp
	for rows.Next() {
		var s RecordStamp
		if err := rows.Scan(&s.ID, &s.Seq, &s.Status, &s.Ver); err != nil {
			return nil, fmt.Errorf("cannot read outage records: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ReadRecords reads the records ids names (missing ones are left out),
// with their stamps.
func ReadRecords(ctx context.Context, db *store.DB, ids []string) ([]Record, []RecordStamp, error) {
	var recs []Record
	var stamps []RecordStamp
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		ids = ids[n:]
		rows, err := db.QueryContext(ctx, `SELECT id, seq, status, ver, data FROM rules_outages WHERE id IN (`+store.Marks(db.Postgres(), 0, n)+`)`, args...)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot read outage records: %w", err)
		}
		for rows.Next() {
			var s RecordStamp
			var b []byte
			if err := rows.Scan(&s.ID, &s.Seq, &s.Status, &s.Ver, &b); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("cannot read outage records: %w", err)
			}
			var r Record
			if err := json.Unmarshal(b, &r); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("cannot decode outage record %s: %w", s.ID, err)
			}
			recs, stamps = append(recs, r), append(stamps, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("cannot read outage records: %w", err)
		}
	}
	return recs, stamps, nil
}

// MeterChange is one meter's state as a rules batch wrote it.
type MeterChange struct {
	Meter string
	Dark  bool  // confirmed dark: past the momentary window
	On    bool  // powered
	Since int64 // when the state began, Unix ns of event time
	Seen  int64 // newest evidence of power
}

func changeOf(lm *loggedMeter) MeterChange {
	return MeterChange{Meter: lm.id, Dark: lm.st == stDark && lm.flags&fConfirmed != 0, On: lm.st == stPowered,
		Since: lm.since, Seen: lm.seen}
}

// MeterChanges calls f with the latest state of every meter the rules
// wrote after seq, and returns the newest seq read: the checkpointed
// meters first, then the log newer than them in order, all from one
// snapshot. A meter that changed twice since seq (dark and back again) may
// show only its last state once the log was checkpointed.
func MeterChanges(ctx context.Context, db *store.DB, seq int64, f func(MeterChange)) (int64, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if db.Postgres() {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return seq, fmt.Errorf("cannot read meter changes: %w", err)
	}
	defer tx.Rollback()
	last := seq
	rows, err := tx.QueryContext(ctx, `SELECT meter, st, flags, since, seen, ver FROM rules_meters WHERE ver > $1`, seq)
	if err != nil {
		return seq, fmt.Errorf("cannot read rules_meters: %w", err)
	}
	for rows.Next() {
		var lm loggedMeter
		var st, flags, ver int64
		if err := rows.Scan(&lm.id, &st, &flags, &lm.since, &lm.seen, &ver); err != nil {
			rows.Close()
			return seq, fmt.Errorf("cannot read rules_meters: %w", err)
		}
		lm.st, lm.flags = uint8(st), uint8(flags)
		last = max(last, ver)
		f(changeOf(&lm))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return seq, fmt.Errorf("cannot read rules_meters: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT seq, data FROM rules_meter_log WHERE seq > $1 ORDER BY seq`, seq)
	if err != nil {
		return seq, fmt.Errorf("cannot read rules_meter_log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s int64
		var b []byte
		if err := rows.Scan(&s, &b); err != nil {
			return seq, fmt.Errorf("cannot read rules_meter_log: %w", err)
		}
		if err := decodeMeters(b, func(lm *loggedMeter) { f(changeOf(lm)) }); err != nil {
			return seq, fmt.Errorf("cannot decode rules_meter_log %d: %w", s, err)
		}
		last = max(last, s)
	}
	return last, rows.Err()
}
