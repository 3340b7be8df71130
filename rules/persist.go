package rules

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// migrations are the rules' tables. Append, never edit.
var migrations = []string{
	`CREATE TABLE rules_meters (meter TEXT PRIMARY KEY, st INTEGER NOT NULL, flags INTEGER NOT NULL,
		since BIGINT NOT NULL, seen BIGINT NOT NULL, last_ts BIGINT NOT NULL, relay_ts BIGINT NOT NULL, due BIGINT NOT NULL)`,
	`CREATE TABLE rules_outages (id TEXT PRIMARY KEY, seq BIGINT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL)`,
	`CREATE TABLE rules_ledger (outage TEXT NOT NULL, account TEXT NOT NULL, flags INTEGER NOT NULL, PRIMARY KEY (outage, account))`,
	`CREATE TABLE rules_accounts (account TEXT PRIMARY KEY, data TEXT NOT NULL)`,
	`CREATE TABLE rules_digests (grid TEXT PRIMARY KEY, data TEXT NOT NULL)`,
}

// writeSet is a batch's dirty state, copied out under the lock so the
// store is written without holding it.
type writeSet struct {
	meters   []any // 8 values a row
	outages  []any // 4
	ledger   []any // 3
	accounts []any // 2
	digests  []any // 2
}

// collect copies the dirty state into a writeSet and clears the dirty
// marks. Lock: e.mu held.
func (e *Engine) collect() *writeSet {
	w := &writeSet{meters: make([]any, 0, 8*len(e.dirtyMeters))}
	for _, i := range e.dirtyMeters {
		m := &e.meters[i]
		m.dirty, m.saved = false, m.seen
		w.meters = append(w.meters, m.id, int64(m.st), int64(m.flags), m.since, m.seen, m.lastTS, m.relayTS, m.due)
	}
	for _, o := range e.dirtyOutages {
		r := e.outages[o]
		r.dirty = false
		b, _ := json.Marshal(r)
		w.outages = append(w.outages, r.ID, r.Seq, r.Status, string(b))
	}
	keys := make([]ledgerKey, 0, len(e.dirtyLedger))
	for k := range e.dirtyLedger {
		keys = append(keys, k)
	}
	for _, k := range keys {
		r := e.outages[k.rec]
		w.ledger = append(w.ledger, r.ID, k.acct, int64(r.ledger[k.acct]))
	}
	for _, id := range e.dirtyAccounts {
		a := e.accounts[id]
		a.dirty = false
		b, _ := json.Marshal(a)
		w.accounts = append(w.accounts, id, string(b))
	}
	for _, g := range e.dirtyDigests {
		d := e.digests[g]
		d.dirty = false
		b, _ := json.Marshal(d)
		w.digests = append(w.digests, g, string(b))
	}
	return w
}

// commit writes w and the intents in one transaction.
func (e *Engine) commit(ctx context.Context, w *writeSet, intents []event.Intent) error {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin rules transaction: %w", err)
	}
	defer tx.Rollback()
	tables := []struct {
		name string
		cols []string
		keys int
		vals []any
	}{
		{"rules_meters", []string{"meter", "st", "flags", "since", "seen", "last_ts", "relay_ts", "due"}, 1, w.meters},
		{"rules_outages", []string{"id", "seq", "status", "data"}, 1, w.outages},
		{"rules_ledger", []string{"outage", "account", "flags"}, 2, w.ledger},
		{"rules_accounts", []string{"account", "data"}, 1, w.accounts},
		{"rules_digests", []string{"grid", "data"}, 1, w.digests},
	}
	for _, t := range tables {
		if err := upsert(ctx, tx, e.db.Postgres(), t.name, t.cols, t.keys, t.vals); err != nil {
			return err
		}
	}
	if len(intents) > 0 {
		if err := e.sink.Enqueue(ctx, tx, intents); err != nil {
			return fmt.Errorf("cannot enqueue %d intents: %w", len(intents), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit rules transaction: %w", err)
	}
	return nil
}

// upsert writes rows (len(cols) values each) with multi-row INSERT … ON
// CONFLICT statements, prepared once per batch and executed per chunk. The
// SQLite driver binds parameters in time quadratic in their number per
// statement, so its chunks are small; PostgreSQL's are large (round trips).
func upsert(ctx context.Context, tx *sql.Tx, postgres bool, table string, cols []string, keys int, vals []any) error {
	nc := len(cols)
	rows := 32
	if postgres {
		rows = 1000
	}
	chunk := rows * nc
	var full *sql.Stmt
	for len(vals) > 0 {
		n := min(chunk, len(vals))
		var err error
		if n == chunk {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, upsertSQL(table, cols, keys, rows)); err != nil {
					return fmt.Errorf("cannot write %s: %w", table, err)
				}
				defer full.Close()
			}
			_, err = full.ExecContext(ctx, vals[:n]...)
		} else {
			_, err = tx.ExecContext(ctx, upsertSQL(table, cols, keys, n/nc), vals[:n]...)
		}
		if err != nil {
			return fmt.Errorf("cannot write %s: %w", table, err)
		}
		vals = vals[n:]
	}
	return nil
}

func upsertSQL(table string, cols []string, keys, rows int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", table, strings.Join(cols, ", "))
	p := 1
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "$%d", p)
			p++
		}
		b.WriteByte(')')
	}
	fmt.Fprintf(&b, " ON CONFLICT (%s) DO UPDATE SET ", strings.Join(cols[:keys], ", "))
	for i, c := range cols[keys:] {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s = excluded.%s", c, c)
	}
	return b.String()
}

// load replaces the in-memory state with what the store holds.
// Lock: e.mu held (or e not yet shared).
func (e *Engine) load(ctx context.Context) error {
	e.reset()
	if err := e.loadMeters(ctx); err != nil {
		return err
	}
	if err := e.loadOutages(ctx); err != nil {
		return err
	}
	if err := e.loadLedger(ctx); err != nil {
		return err
	}
	if err := e.loadJSON(ctx, `SELECT account, data FROM rules_accounts`, func(k string, b []byte) error {
		a := &account{}
		e.accounts[k] = a
		return json.Unmarshal(b, a)
	}); err != nil {
		return err
	}
	if err := e.loadJSON(ctx, `SELECT grid, data FROM rules_digests`, func(k string, b []byte) error {
		d := &digest{}
		e.digests[k] = d
		return json.Unmarshal(b, d)
	}); err != nil {
		return err
	}
	e.resetBatch()
	return nil
}

func (e *Engine) loadMeters(ctx context.Context) error {
	rows, err := e.db.QueryContext(ctx, `SELECT meter, st, flags, since, seen, last_ts, relay_ts, due FROM rules_meters`)
	if err != nil {
		return fmt.Errorf("cannot load rules meters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var st, flags, since, seen, lastTS, relayTS, due int64
		if err := rows.Scan(&id, &st, &flags, &since, &seen, &lastTS, &relayTS, &due); err != nil {
			return fmt.Errorf("cannot load rules meters: %w", err)
		}
		i := e.meter(id, "")
		m := &e.meters[i]
		m.st, m.flags, m.since, m.seen, m.saved, m.lastTS, m.relayTS, m.due = uint8(st), uint8(flags), since, seen, seen, lastTS, relayTS, due
		if m.flags&fConfirmed != 0 && m.area >= 0 {
			e.areas[m.area].dark++
		}
		if due != 0 {
			e.pending.push(dueItem{due: due, m: i})
		}
	}
	return rows.Err()
}

func (e *Engine) loadOutages(ctx context.Context) error {
	var recs []*outage
	err := e.loadJSON(ctx, `SELECT id, data FROM rules_outages`, func(_ string, b []byte) error {
		r := &outage{}
		recs = append(recs, r)
		return json.Unmarshal(b, r)
	})
	if err != nil {
		return err
	}
	slices.SortFunc(recs, func(a, b *outage) int { return int(a.Seq - b.Seq) })
	now := e.clk.Now()
	for _, r := range recs {
		r.idx = int32(len(e.outages))
		r.ledger = map[string]uint8{}
		e.outages = append(e.outages, r)
		e.seq = max(e.seq, r.Seq)
		if r.Status == statusMerged {
			continue
		}
		e.outageIdx[r.ID] = r.idx
		for _, a := range r.Aliases {
			e.outageIdx[a] = r.idx
		}
		e.rebuildMembers(r)
		if r.Source != "oms" && now.Sub(r.Created) <= e.cfg.StormWindow {
			e.stormHits = append(e.stormHits, r.Created)
		}
	}
	slices.SortFunc(e.stormHits, func(a, b time.Time) int { return a.Compare(b) })
	return nil
}

// rebuildMembers makes r's scope its members again. A live record's claim
// on a meter beats a closed one's; otherwise the later record wins.
// Lock: e.mu held.
func (e *Engine) rebuildMembers(r *outage) {
	claim := func(i int32) {
		m := &e.meters[i]
		if m.outage == r.idx {
			return
		}
		if m.outage >= 0 && e.outages[m.outage].live() && !r.live() {
			return
		}
		m.outage = r.idx
		r.members = append(r.members, i)
	}
	for _, a := range r.Areas {
		ai := e.area(a)
		e.areas[ai].rec = r.idx
		for _, i := range e.areas[ai].meters {
			claim(i)
		}
	}
	for _, f := range r.Feeders {
		for _, a := range e.dir.FeederAreas(f) {
			for _, i := range e.areas[e.area(a)].meters {
				claim(i)
			}
		}
	}
	for _, id := range r.Meters {
		i := e.meter(id, "")
		claim(i)
		if a := e.meters[i].area; a >= 0 && r.Source != "oms" {
			e.areas[a].rec = r.idx
		}
	}
}

func (e *Engine) loadLedger(ctx context.Context) error {
	rows, err := e.db.QueryContext(ctx, `SELECT outage, account, flags FROM rules_ledger`)
	if err != nil {
		return fmt.Errorf("cannot load rules ledger: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, acct string
		var f int64
		if err := rows.Scan(&id, &acct, &f); err != nil {
			return fmt.Errorf("cannot load rules ledger: %w", err)
		}
		if o, ok := e.outageIdx[id]; ok {
			e.outages[o].ledger[acct] |= uint8(f)
		}
	}
	return rows.Err()
}

func (e *Engine) loadJSON(ctx context.Context, q string, f func(string, []byte) error) error {
	rows, err := e.db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("cannot load rules state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var b []byte
		if err := rows.Scan(&k, &b); err != nil {
			return fmt.Errorf("cannot load rules state: %w", err)
		}
		if err := f(k, b); err != nil {
			return fmt.Errorf("cannot decode rules state %s: %w", k, err)
		}
	}
	return rows.Err()
}
