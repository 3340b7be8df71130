package rules

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// migrations are the rules' tables. Append, never edit.
var migrations = []string{
	`CREATE TABLE rules_meters (meter TEXT PRIMARY KEY, st INTEGER NOT NULL, flags INTEGER NOT NULL,
		since BIGINT NOT NULL, seen BIGINT NOT NULL, last_ts BIGINT NOT NULL, relay_ts BIGINT NOT NULL, due BIGINT NOT NULL)`,
	`CREATE TABLE rules_outages (id TEXT PRIMARY KEY, seq BIGINT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL)`,
	`CREATE TABLE rules_ledger (outage TEXT NOT NULL, account TEXT NOT NULL, flags INTEGER NOT NULL, PRIMARY KEY (outage, account))`,
	`CREATE TABLE rules_accounts (account TEXT PRIMARY KEY, data TEXT NOT NULL)`,
	`CREATE TABLE rules_digests (grid TEXT PRIMARY KEY, data TEXT NOT NULL)`,
	// Meter changes are appended as one row a batch and checkpointed into
	// rules_meters when the writer is idle; rules_ledger (3) gave way to one
	// row an outage (rules_told).
	`CREATE TABLE rules_meter_log (seq BIGINT PRIMARY KEY, data BYTEA NOT NULL)`,
	`ALTER TABLE rules_meters ADD COLUMN ver BIGINT NOT NULL DEFAULT 0`,
	`CREATE TABLE rules_told (outage TEXT PRIMARY KEY, data TEXT NOT NULL)`,
	`ALTER TABLE rules_meters ADD COLUMN on_ts BIGINT NOT NULL DEFAULT 0`,
	// Nothing reads the per-account ledger since rules_told (8) replaced it.
	`DROP TABLE rules_ledger`,
	// Every row carries the version (meter log seq) of the commit that
	// wrote it, so a copy reads only what changed since its last refresh.
	`ALTER TABLE rules_outages ADD COLUMN ver BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE rules_told ADD COLUMN ver BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE rules_accounts ADD COLUMN ver BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE rules_digests ADD COLUMN ver BIGINT NOT NULL DEFAULT 0`,
	`CREATE INDEX rules_meters_ver ON rules_meters (ver)`,
	`CREATE INDEX rules_outages_ver ON rules_outages (ver)`,
	`CREATE INDEX rules_told_ver ON rules_told (ver)`,
	`CREATE INDEX rules_accounts_ver ON rules_accounts (ver)`,
	`CREATE INDEX rules_digests_ver ON rules_digests (ver)`,
}

// checkpointChunk caps the meters copied from the log into rules_meters in
// one idle tick, so a checkpoint never stalls callers for long.
const checkpointChunk = 10000

// writeSet is a batch's dirty state, copied out under the lock so the
// store is written without holding it.
type writeSet struct {
	ver      int64  // the commit's version, in every row it writes; 0 = none
	logSeq   int64  // 0 = no meter changed
	log      []byte // the changed meters, encoded
	snap     []any  // checkpointed meters, 10 values a row
	trimLog  int64  // log rows up to this seq are checkpointed: delete them
	outages  []any  // 5 values a row
	told     []any  // 3
	accounts []any  // 3
	digests  []any  // 3
	// meters held in memory stay unwritten (collect): the commit must not
	// store offsets, which would run ahead of them
	noOffsets bool
}

// collect copies the dirty state into a writeSet and clears the dirty
// marks. idle batches also checkpoint logged meters. Lock: e.mu held.
func (e *Engine) collect(idle bool) *writeSet {
	w := &writeSet{}
	if idle {
		e.sweepSeen(e.clk.Now().UnixNano())
	}
	// Meters held in memory are written with the next offsets, and only
	// then: when the batch writes state of its own anyway, or when the
	// offsets have waited offsetEvery. A checkpoint alone (an idle tick
	// copying logged meters into rules_meters) neither writes them nor
	// stores offsets: it would log every held meter on every tick.
	if len(e.held) > 0 {
		if e.writes() || e.offsetsDue() {
			for _, i := range e.held {
				if e.meters[i].held {
					e.markDirty(i)
				}
			}
			e.held = e.held[:0]
		} else {
			w.noOffsets = true
		}
	}
	if len(e.dirtyMeters)+len(e.dirtyOutages)+len(e.dirtyLedger)+len(e.dirtyAccounts)+len(e.dirtyDigests) > 0 {
		// one version a commit that changes state, shared with the meter
		// log's seq: copies read the rows newer than the last they saw
		e.logSeq++
		w.ver = e.logSeq
	}
	if len(e.dirtyMeters) > 0 {
		w.logSeq = e.logSeq
		w.log = append(make([]byte, 0, 1+48*len(e.dirtyMeters)), logFormat2)
		for _, i := range e.dirtyMeters {
			m := &e.meters[i]
			m.dirty, m.held, m.saved, m.ver = false, false, m.seen, e.logSeq
			w.log = appendMeter(w.log, m)
			if !m.snap {
				m.snap = true
				e.snapList = append(e.snapList, i)
			}
		}
	}
	if idle && len(e.snapList) > 0 {
		n := min(len(e.snapList), checkpointChunk)
		for _, i := range e.snapList[:n] {
			m := &e.meters[i]
			m.snap = false
			w.snap = append(w.snap, m.id, int64(m.st), int64(m.flags), m.since, m.seen, m.lastTS, m.relayTS, m.due, m.ver, m.onTS)
		}
		e.snapList = e.snapList[n:]
		if len(e.snapList) == 0 {
			e.snapList = nil
			w.trimLog = e.logSeq
		}
	}
	for _, o := range e.dirtyOutages {
		r := e.outages[o]
		r.dirty = false
		e.freeze(r)
		b, _ := json.Marshal(r)
		w.outages = append(w.outages, r.ID, r.Seq, r.Status, string(b), w.ver)
	}
	for o := range e.dirtyLedger {
		r := e.outages[o]
		w.told = append(w.told, r.ID, encodeTold(r.ledger), w.ver)
	}
	for _, id := range e.dirtyAccounts {
		a := e.accounts[id]
		a.dirty = false
		b, _ := json.Marshal(a)
		w.accounts = append(w.accounts, id, string(b), w.ver)
	}
	for _, g := range e.dirtyDigests {
		d := e.digests[g]
		d.dirty = false
		b, _ := json.Marshal(d)
		w.digests = append(w.digests, g, string(b), w.ver)
	}
	return w
}

// writes reports whether the batch being collected changes stored state
// apart from meters held in memory (hold) and a checkpoint. Lock: e.mu
// held.
func (e *Engine) writes() bool {
	return len(e.dirtyMeters)+len(e.dirtyOutages)+len(e.dirtyLedger)+len(e.dirtyAccounts)+len(e.dirtyDigests) > 0 ||
		e.out.n > 0
}

// encodeTold writes a ledger as a JSON object, without reflection: a
// storm's outages hold half a million accounts.
func encodeTold(l map[string]uint8) string {
	b := make([]byte, 0, 16*len(l)+2)
	b = append(b, '{')
	for acct, f := range l {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, acct)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(f), 10)
	}
	return string(append(b, '}'))
}

// logFormat2 opens every log row: its entries carry onTS. (A first format,
// without it, was written only before any release and is not read.)
const logFormat2 = 0

// appendMeter encodes one meter's state for the log.
func appendMeter(b []byte, m *meterState) []byte {
	b = binary.AppendUvarint(b, uint64(len(m.id)))
	b = append(b, m.id...)
	b = append(b, m.st, m.flags)
	for _, v := range [...]int64{m.since, m.seen, m.lastTS, m.relayTS, m.due, m.onTS} {
		b = binary.AppendVarint(b, v)
	}
	return b
}

// loggedMeter is one decoded log entry.
type loggedMeter struct {
	id                                      string
	st, flags                               uint8
	since, seen, lastTS, relayTS, due, onTS int64
}

var errCorruptLog = errors.New("corrupt meter log entry")

func decodeMeters(b []byte, f func(*loggedMeter)) error {
	if len(b) == 0 || b[0] != logFormat2 {
		return errCorruptLog
	}
	b = b[1:]
	for len(b) > 0 {
		var lm loggedMeter
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n+2 {
			return errCorruptLog
		}
		lm.id = string(b[k : k+int(n)])
		b = b[k+int(n):]
		lm.st, lm.flags = b[0], b[1]
		b = b[2:]
		for _, p := range [...]*int64{&lm.since, &lm.seen, &lm.lastTS, &lm.relayTS, &lm.due, &lm.onTS} {
			v, k := binary.Varint(b)
			if k <= 0 {
				return errCorruptLog
			}
			*p, b = v, b[k:]
		}
		f(&lm)
	}
	return nil
}

// empty reports whether w writes nothing: a batch of plain readings.
func (w *writeSet) empty() bool {
	return w.logSeq == 0 && w.trimLog == 0 && len(w.snap)+len(w.outages)+len(w.told)+len(w.accounts)+len(w.digests) == 0
}

// commit writes w and the intents in one transaction; with nothing to
// write it touches no store.
func (e *Engine) commit(ctx context.Context, w *writeSet, intents []event.Intent) error {
	quiet := w.empty() && len(intents) == 0
	offsets := e.dueOffsets(quiet)
	if w.noOffsets {
		offsets = nil
	}
	if quiet && offsets == nil {
		return nil
	}
	unlock := e.db.LockWrite(true) // before the dispatcher's writes: intake waits on this one
	defer unlock()
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin rules transaction: %w", err)
	}
	defer tx.Rollback()
	if w.logSeq > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO rules_meter_log (seq, data) VALUES ($1, $2)`, w.logSeq, w.log); err != nil {
			return fmt.Errorf("cannot write rules_meter_log: %w", err)
		}
	}
	tables := []struct {
		name string
		cols []string
		keys int
		vals []any
	}{
		{"rules_meters", []string{"meter", "st", "flags", "since", "seen", "last_ts", "relay_ts", "due", "ver", "on_ts"}, 1, w.snap},
		{"rules_outages", []string{"id", "seq", "status", "data", "ver"}, 1, w.outages},
		{"rules_told", []string{"outage", "data", "ver"}, 1, w.told},
		{"rules_accounts", []string{"account", "data", "ver"}, 1, w.accounts},
		{"rules_digests", []string{"grid", "data", "ver"}, 1, w.digests},
	}
	for _, t := range tables {
		if err := store.Upsert(ctx, tx, e.db.Postgres(), t.name, t.cols, t.keys, t.vals); err != nil {
			return err
		}
	}
	if w.trimLog > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM rules_meter_log WHERE seq <= $1`, w.trimLog); err != nil {
			return fmt.Errorf("cannot trim rules_meter_log: %w", err)
		}
	}
	if len(intents) > 0 {
		if err := e.sink.Enqueue(ctx, tx, intents); err != nil {
			return fmt.Errorf("cannot enqueue %d intents: %w", len(intents), err)
		}
	}
	if e.fence != nil {
		if err := e.fence(ctx, tx, offsets); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit rules transaction: %w", err)
	}
	if offsets != nil {
		clear(e.offsets)
		e.offsetsAt = time.Now()
	}
	return nil
}

// load replaces the in-memory state with what the store holds: it builds
// a new state and swaps it in only when whole. Writer only (or e not yet
// shared); it takes e.mu for the swap.
func (e *Engine) load(ctx context.Context) error {
	f := &Engine{cfg: e.cfg, db: e.db, dir: e.dir, gens: e.gens, sink: e.sink, clk: e.clk, log: e.log}
	if err := f.loadState(ctx); err != nil {
		return err
	}
	e.mu.Lock()
	e.state = f.state
	e.mu.Unlock()
	e.fullLoads.Add(1)
	fullLoads.Inc()
	e.resetBatch()
	clear(e.offsets) // input applied since the last commit is read again from the stored offsets
	return nil
}

// loadState fills e's state from the store, read in one snapshot (see
// snapshot). e is not shared yet.
func (e *Engine) loadState(ctx context.Context) error {
	e.reset()
	if e.gens != nil {
		e.dirGen = e.gens.Generation() // before the first lookup: a later swap is seen
	}
	q, done, err := e.snapshot(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := e.loadMeters(ctx, q); err != nil {
		return err
	}
	if err := e.loadOutages(ctx, q); err != nil {
		return err
	}
	if err := e.loadLedger(ctx, q); err != nil {
		return err
	}
	if err := loadRows(ctx, q, `SELECT account, data FROM rules_accounts`, func(k string, b []byte) error {
		a := &account{}
		e.accounts[k] = a
		return json.Unmarshal(b, a)
	}); err != nil {
		return err
	}
	if err := loadRows(ctx, q, `SELECT grid, data FROM rules_digests`, func(k string, b []byte) error {
		d := &digest{}
		e.digests[k] = d
		return json.Unmarshal(b, d)
	}); err != nil {
		return err
	}
	v, err := lastVersion(ctx, q)
	if err != nil {
		return err
	}
	e.logSeq = max(e.logSeq, v)
	e.copyTrim = -1
	e.resetBatch()
	return nil
}

// loadMeters reads the checkpoint, replays the newer log entries over it,
// and rebuilds area counts and pending decisions.
func (e *Engine) loadMeters(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, `SELECT meter, st, flags, since, seen, last_ts, relay_ts, due, ver, on_ts FROM rules_meters`)
	if err != nil {
		return fmt.Errorf("cannot load rules meters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var lm loggedMeter
		var st, flags, ver int64
		if err := rows.Scan(&lm.id, &st, &flags, &lm.since, &lm.seen, &lm.lastTS, &lm.relayTS, &lm.due, &ver, &lm.onTS); err != nil {
			return fmt.Errorf("cannot load rules meters: %w", err)
		}
		lm.st, lm.flags = uint8(st), uint8(flags)
		e.restoreMeter(&lm, ver, false)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot load rules meters: %w", err)
	}
	if err := e.replayLog(ctx, q); err != nil {
		return err
	}
	for i := range e.meters {
		m := &e.meters[i]
		if m.flags&fConfirmed != 0 && m.st == stDark && m.area >= 0 {
			e.areas[m.area].dark++
		}
		if m.due != 0 {
			e.pending.push(dueItem{due: m.due, m: int32(i)})
		}
	}
	return nil
}

func (e *Engine) replayLog(ctx context.Context, q querier) error {
	return loadRows(ctx, q, `SELECT seq, data FROM rules_meter_log ORDER BY seq`, func(seq int64, b []byte) error {
		return decodeMeters(b, func(lm *loggedMeter) { e.restoreMeter(lm, seq, true) })
	})
}

// restoreMeter sets a meter's stored state written at ver, unless it
// already holds a newer one. A state from the log is due a checkpoint.
// Lock: e.mu held.
func (e *Engine) restoreMeter(lm *loggedMeter, ver int64, logged bool) {
	e.logSeq = max(e.logSeq, ver)
	i := e.meter(lm.id, "")
	m := &e.meters[i]
	if ver <= m.ver && m.ver != 0 {
		return
	}
	m.st, m.flags, m.since, m.seen, m.saved, m.lastTS, m.relayTS, m.due, m.ver, m.onTS =
		lm.st, lm.flags, lm.since, lm.seen, lm.seen, lm.lastTS, lm.relayTS, lm.due, ver, lm.onTS
	if logged && !m.snap {
		m.snap = true
		e.snapList = append(e.snapList, i)
	}
}

func (e *Engine) loadOutages(ctx context.Context, q querier) error {
	var recs []*outage
	err := loadRows(ctx, q, `SELECT id, data FROM rules_outages`, func(_ string, b []byte) error {
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
	}
	e.rebuildStormHits(now)
	return nil
}

// rebuildStormHits counts again the records of the storm window (each AMI
// record's creation). Lock: e.mu held.
func (e *Engine) rebuildStormHits(now time.Time) {
	e.stormHits = e.stormHits[:0]
	for _, r := range e.outages {
		if r.Status != statusMerged && r.Source != "oms" && now.Sub(r.Created) <= e.cfg.StormWindow {
			e.stormHits = append(e.stormHits, r.Created)
		}
	}
	slices.SortFunc(e.stormHits, func(a, b time.Time) int { return a.Compare(b) })
}

// rebuildMembers makes r's scope its members again. A live record's claim
// on a meter beats a closed one's; otherwise the later record wins (see
// outranks), whatever order the records are rebuilt in. Lock: e.mu held.
func (e *Engine) rebuildMembers(r *outage) {
	claim := func(i int32) {
		m := &e.meters[i]
		if m.outage == r.idx {
			return
		}
		if m.outage >= 0 && !r.outranks(e.outages[m.outage]) {
			return
		}
		m.outage = r.idx
		r.members = append(r.members, i)
	}
	cover := func(ai int32) {
		if rec := e.areas[ai].rec; rec < 0 || e.outages[rec].Seq <= r.Seq {
			e.areas[ai].rec = r.idx
		}
	}
	for _, a := range r.Areas {
		ai := e.area(a)
		cover(ai)
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
			cover(a)
		}
	}
}

// outranks reports whether r's claim on a meter beats h's: a live record
// beats a closed one, then the later record wins.
func (r *outage) outranks(h *outage) bool {
	if r.live() != h.live() {
		return r.live()
	}
	return r.Seq > h.Seq
}

// loadLedger reads what each outage's customers were told: one row an
// outage (rules_told).
func (e *Engine) loadLedger(ctx context.Context, q querier) error {
	return loadRows(ctx, q, `SELECT outage, data FROM rules_told`, func(id string, b []byte) error {
		var told map[string]uint8
		if err := json.Unmarshal(b, &told); err != nil {
			return err
		}
		if o, ok := e.outageIdx[id]; ok {
			for acct, f := range told {
				e.outages[o].ledger[acct] |= f
			}
		}
		return nil
	})
}

// loadRows runs q, whose rows are a key and its data, and calls f for each.
func loadRows[K any](ctx context.Context, db querier, q string, f func(K, []byte) error) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("cannot load rules state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k K
		var b []byte
		if err := rows.Scan(&k, &b); err != nil {
			return fmt.Errorf("cannot load rules state: %w", err)
		}
		if err := f(k, b); err != nil {
			return fmt.Errorf("cannot decode rules state %v: %w", k, err)
		}
	}
	return rows.Err()
}
