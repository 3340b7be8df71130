package rules

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/gridbell/gridbell/internal/metrics"
)

// A copy (distributed mode: an instance that does not run the rules)
// follows the rules' commits incrementally. Every row of the rules' tables
// carries the version of the commit that wrote it (the meter log's seq,
// one a commit that changes state), so a refresh reads, in one snapshot,
// only what is newer than the last version it applied: the meter log's
// new rows, the checkpointed meters newer than that (a copy that fell
// behind the log's trim finds the trimmed meters there), and the outage
// records, told sets, accounts and digests written since. A record pruned
// meanwhile is noticed by the count of records. The copy is then a warm
// standby: taking over the rules is one more refresh, not a load.

// querier is what a load or a refresh reads the store through.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

var (
	fullLoads = metrics.Default.Counter("gridbell_rules_full_loads_total",
		"rules state loaded whole from the store: at start, and after a failed commit")
	copyRefreshes = metrics.Default.Counter("gridbell_rules_copy_refreshes_total",
		"distributed mode: incremental refreshes of this instance's copy of the rules' state")
	copyRows = metrics.Default.Counter("gridbell_rules_copy_rows_total",
		"distributed mode: changed rows (meters, records, told sets, accounts, digests) applied to this instance's copy")
)

// snapshot returns what to read the whole state through, consistently: on
// PostgreSQL a read-only REPEATABLE READ transaction (the rules commit
// meanwhile, and a copy applies versions up to the newest it read, so no
// table may show a later commit than another). On SQLite the store itself:
// one process writes it, and never while it loads. done ends it.
func (e *Engine) snapshot(ctx context.Context) (querier, func(), error) {
	if !e.db.Postgres() {
		return e.db, func() {}, nil
	}
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read the rules state: %w", err)
	}
	return tx, func() { tx.Rollback() }, nil
}

// lastVersion is the newest version any row of the rules' tables carries.
func lastVersion(ctx context.Context, q querier) (int64, error) {
	var v int64
	for _, t := range []string{"rules_meters", "rules_outages", "rules_told", "rules_accounts", "rules_digests"} {
		if err := scanOne(ctx, q, &v, `SELECT COALESCE(MAX(ver), 0) FROM `+t); err != nil {
			return 0, err
		}
	}
	return v, nil
}

// scanOne reads one integer, keeping the larger of it and *v.
func scanOne(ctx context.Context, q querier, v *int64, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("cannot read the rules state: %w", err)
	}
	defer rows.Close()
	var n sql.NullInt64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("cannot read the rules state: %w", err)
		}
	}
	*v = max(*v, n.Int64)
	return rows.Err()
}

// FullLoads reports how many times this Engine loaded its whole state from
// the store (at start, after a failed commit); a copy that follows and a
// takeover by a copy add none.
func (e *Engine) FullLoads() int64 { return e.fullLoads.Load() }

// Refresh brings the copy up to what the rules have committed, reading
// only what changed since the last refresh (see above). Never while Run
// runs: the instance running the rules is the one writing.
func (e *Engine) Refresh(ctx context.Context) error {
	if e.running.Load() {
		return errors.New("cannot refresh a running rules engine")
	}
	q, done, err := e.snapshot(ctx)
	if err != nil {
		return err
	}
	defer done()
	e.mu.RLock()
	last := e.logSeq
	e.mu.RUnlock()
	c, err := readChanges(ctx, q, last)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.followDirectory()
	e.applyChanges(c)
	if c.records != len(e.outages) { // records pruned
		if err := e.dropPruned(ctx, q); err != nil {
			return err
		}
	}
	e.forgetCheckpointed(c.logFrom)
	e.logSeq = max(e.logSeq, c.ver)
	copyRefreshes.Inc()
	copyRows.Add(float64(len(c.meters) + len(c.outages) + len(c.told) + len(c.accounts) + len(c.digests)))
	return nil
}

// changes is what a refresh read: every row written after a version.
type changes struct {
	ver      int64 // the newest version read
	meters   []versioned
	outages  []*outage
	told     map[string]map[string]uint8
	accounts map[string]*account
	digests  map[string]*digest
	records  int   // outage records in the store
	logFrom  int64 // the meter log's first seq; 0 = the log is empty
}

// versioned is a meter's state and the version it was written at; logged
// when it came from the meter log (not yet checkpointed).
type versioned struct {
	loggedMeter
	ver    int64
	logged bool
}

// readChanges reads every row written after version last.
func readChanges(ctx context.Context, q querier, last int64) (*changes, error) {
	c := &changes{ver: last, told: map[string]map[string]uint8{}, accounts: map[string]*account{}, digests: map[string]*digest{}}
	if err := c.readMeters(ctx, q, last); err != nil {
		return nil, err
	}
	err := versionedRows(ctx, q, `SELECT id, data, ver FROM rules_outages WHERE ver > $1`, last, &c.ver, func(_ string, b []byte) error {
		r := &outage{}
		c.outages = append(c.outages, r)
		return json.Unmarshal(b, r)
	})
	if err != nil {
		return nil, err
	}
	if err := versionedRows(ctx, q, `SELECT outage, data, ver FROM rules_told WHERE ver > $1`, last, &c.ver, func(id string, b []byte) error {
		var told map[string]uint8
		err := json.Unmarshal(b, &told)
		c.told[id] = told
		return err
	}); err != nil {
		return nil, err
	}
	if err := versionedRows(ctx, q, `SELECT account, data, ver FROM rules_accounts WHERE ver > $1`, last, &c.ver, func(id string, b []byte) error {
		a := &account{}
		c.accounts[id] = a
		return json.Unmarshal(b, a)
	}); err != nil {
		return nil, err
	}
	if err := versionedRows(ctx, q, `SELECT grid, data, ver FROM rules_digests WHERE ver > $1`, last, &c.ver, func(g string, b []byte) error {
		d := &digest{}
		c.digests[g] = d
		return json.Unmarshal(b, d)
	}); err != nil {
		return nil, err
	}
	var n int64
	if err := scanOne(ctx, q, &n, `SELECT COUNT(*) FROM rules_outages`); err != nil {
		return nil, err
	}
	c.records = int(n)
	return c, nil
}

// readMeters reads the checkpointed meters written after last, then the
// meter log's rows after it. A meter in both is applied at its newer
// version.
func (c *changes) readMeters(ctx context.Context, q querier, last int64) error {
	rows, err := q.QueryContext(ctx, `SELECT meter, st, flags, since, seen, last_ts, relay_ts, due, ver, on_ts FROM rules_meters WHERE ver > $1`, last)
	if err != nil {
		return fmt.Errorf("cannot read changed rules meters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v versioned
		var st, flags int64
		if err := rows.Scan(&v.id, &st, &flags, &v.since, &v.seen, &v.lastTS, &v.relayTS, &v.due, &v.ver, &v.onTS); err != nil {
			return fmt.Errorf("cannot read changed rules meters: %w", err)
		}
		v.st, v.flags = uint8(st), uint8(flags)
		c.meters = append(c.meters, v)
		c.ver = max(c.ver, v.ver)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read changed rules meters: %w", err)
	}
	if err := scanOne(ctx, q, &c.logFrom, `SELECT MIN(seq) FROM rules_meter_log`); err != nil {
		return err
	}
	return versionedRows(ctx, q, `SELECT seq, data, seq FROM rules_meter_log WHERE seq > $1 ORDER BY seq`, last, &c.ver, func(seq int64, b []byte) error {
		return decodeMeters(b, func(lm *loggedMeter) {
			c.meters = append(c.meters, versioned{loggedMeter: *lm, ver: seq, logged: true})
		})
	})
}

// versionedRows runs query with last, whose rows are a key, its data and
// its version, calls f for each and keeps the newest version in *ver.
func versionedRows[K any](ctx context.Context, q querier, query string, last int64, ver *int64, f func(K, []byte) error) error {
	rows, err := q.QueryContext(ctx, query, last)
	if err != nil {
		return fmt.Errorf("cannot read the rules state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k K
		var b []byte
		var v int64
		if err := rows.Scan(&k, &b, &v); err != nil {
			return fmt.Errorf("cannot read the rules state: %w", err)
		}
		if err := f(k, b); err != nil {
			return fmt.Errorf("cannot decode rules state %v: %w", k, err)
		}
		*ver = max(*ver, v)
	}
	return rows.Err()
}

// applyChanges applies what a refresh read. Lock: e.mu held.
func (e *Engine) applyChanges(c *changes) {
	for i := range c.meters {
		e.applyMeter(&c.meters[i])
	}
	e.applyRecords(c.outages)
	for id, told := range c.told {
		o, ok := e.outageIdx[id]
		if !ok {
			continue
		}
		r := e.outages[o]
		if r.ID == id {
			r.ledger = told
		}
	}
	for id, told := range c.told { // a merged record's told set counts for the record it went into
		if o, ok := e.outageIdx[id]; ok && e.outages[o].ID != id {
			for acct, f := range told {
				e.outages[o].ledger[acct] |= f
			}
		}
	}
	for id, a := range c.accounts {
		e.accounts[id] = a
	}
	for g, d := range c.digests {
		e.digests[g] = d
	}
}

// applyMeter sets a changed meter's state, keeping its area's count of
// dark meters. Lock: e.mu held.
func (e *Engine) applyMeter(v *versioned) {
	i := e.meter(v.id, "")
	m := &e.meters[i]
	if !v.logged && v.ver >= m.ver {
		m.snap = false // checkpointed
	}
	if m.flags&fConfirmed != 0 && m.st == stDark && m.area >= 0 {
		e.areas[m.area].dark--
	}
	e.restoreMeter(&v.loggedMeter, v.ver, v.logged)
	if m.flags&fConfirmed != 0 && m.st == stDark && m.area >= 0 {
		e.areas[m.area].dark++
	}
}

// applyRecords adds new outage records and replaces changed ones, then
// brings meters' membership up to date: by claims of the changed records
// alone while every change only adds new records or widens one's scope,
// else by rebuilding every record's members as a load does.
// Lock: e.mu held.
func (e *Engine) applyRecords(recs []*outage) {
	if len(recs) == 0 {
		return
	}
	slices.SortFunc(recs, func(a, b *outage) int { return int(a.Seq - b.Seq) })
	rebuild := false
	changed := make([]*outage, 0, len(recs))
	for _, nr := range recs {
		o, found := slices.BinarySearchFunc(e.outages, nr.Seq, func(r *outage, seq int64) int { return int(r.Seq - seq) })
		if !found {
			nr.idx = int32(len(e.outages))
			nr.ledger = map[string]uint8{}
			e.outages = append(e.outages, nr)
			e.seq = max(e.seq, nr.Seq)
			changed = append(changed, nr)
			continue
		}
		r := e.outages[o]
		if r.live() != nr.live() || r.Status == statusMerged || !widened(r, nr) {
			rebuild = true
		}
		nr.idx, nr.members, nr.ledger = r.idx, r.members, r.ledger
		*r = *nr
		changed = append(changed, r)
	}
	for _, r := range changed {
		if r.Status == statusMerged { // its told set counts for the record it went into
			if o, ok := e.outageIdx[r.ID]; ok && o == r.idx {
				delete(e.outageIdx, r.ID)
			}
			r.ledger = map[string]uint8{}
			continue
		}
		e.outageIdx[r.ID] = r.idx
		for _, a := range r.Aliases {
			e.outageIdx[a] = r.idx
		}
	}
	if rebuild {
		e.rebuildAllMembers()
		return
	}
	for _, r := range changed {
		if r.Status != statusMerged {
			e.rebuildMembers(r)
		}
	}
}

// widened reports whether nr's scope holds all of r's: the same or more
// areas, feeders and meters, in the order the rules append them.
func widened(r, nr *outage) bool {
	prefix := func(a, b []string) bool { return len(a) <= len(b) && slices.Equal(a, b[:len(a)]) }
	return prefix(r.Areas, nr.Areas) && prefix(r.Feeders, nr.Feeders) && prefix(r.Meters, nr.Meters)
}

// rebuildAllMembers rebuilds every record's members from their scopes, as
// a load does. Lock: e.mu held.
func (e *Engine) rebuildAllMembers() {
	for i := range e.meters {
		e.meters[i].outage = -1
	}
	for i := range e.areas {
		e.areas[i].rec = -1
	}
	for _, r := range e.outages {
		r.members = nil
		if r.Status != statusMerged {
			e.rebuildMembers(r)
		}
	}
}

// dropPruned drops the records no longer in the store (the rules pruned
// them). Lock: e.mu held.
func (e *Engine) dropPruned(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, `SELECT id FROM rules_outages`)
	if err != nil {
		return fmt.Errorf("cannot read the rules' outage records: %w", err)
	}
	defer rows.Close()
	kept := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("cannot read the rules' outage records: %w", err)
		}
		kept[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read the rules' outage records: %w", err)
	}
	drop := make([]bool, len(e.outages))
	for i, r := range e.outages {
		drop[i] = !kept[r.ID]
	}
	e.dropRecords(drop)
	e.rebuildAllMembers()
	return nil
}

// forgetCheckpointed takes out of the list of meters due a checkpoint
// those the rules have checkpointed: every meter logged before the log's
// first row (all, when it is empty), so that, taking over, this Engine
// checkpoints only what is not yet. Lock: e.mu held.
func (e *Engine) forgetCheckpointed(logFrom int64) {
	if logFrom == e.copyTrim || len(e.snapList) == 0 {
		return
	}
	e.copyTrim = logFrom
	kept := e.snapList[:0]
	for _, i := range e.snapList {
		if m := &e.meters[i]; m.snap && logFrom != 0 && m.ver >= logFrom {
			kept = append(kept, i)
		} else {
			m.snap = false
		}
	}
	e.snapList = kept
}

// takeOver readies a copy's state for the writer, before Run applies
// anything: the pending decisions and the storm window, which a copy does
// not keep, and a fresh last-seen sweep. Writer only.
func (e *Engine) takeOver() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pending = e.pending[:0]
	for i := range e.meters {
		if d := e.meters[i].due; d != 0 {
			e.pending.push(dueItem{due: d, m: int32(i)})
		}
	}
	now := e.clk.Now()
	e.rebuildStormHits(now)
	e.sweepAt, e.nextSweep = -1, now.Add(seenFlushEvery).UnixNano()
	e.resetBatch()
}
