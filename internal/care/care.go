package care

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// Messages is what care reads of the notify outbox (*notify.Outbox).
type Messages interface {
	History(ctx context.Context, accounts []string, limit int) ([]notify.Sent, error)
	FirstSent(ctx context.Context, refs []string, since int64) (map[string]map[string]int64, error)
}

// Sink takes the follow-up lists for grid managers inside care's
// transaction (*notify.Outbox).
type Sink interface {
	Enqueue(ctx context.Context, tx *sql.Tx, intents []event.Intent) error
}

// Care is the projection and the answers built on it.
type Care struct {
	cfg  Config
	db   *store.DB
	dir  Directory
	msgs Messages
	sink Sink // nil: no follow-up lists are sent
	clk  clock.Clock
	log  zerolog.Logger

	p      *projection // Run's goroutine only
	holder string      // the care lease's holder while Run projects; "" = unfenced (Step called alone)
	smsAt  time.Time   // when SMS times were last filled in
	recent recentIndex
	served servedCache
}

// New migrates care's tables. msgs and sink may be nil (no SMS figures, no
// follow-up lists).
func New(ctx context.Context, cfg Config, db *store.DB, dir Directory, msgs Messages, sink Sink, clk clock.Clock, log zerolog.Logger) (*Care, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, "care", migrations); err != nil {
		return nil, err
	}
	c := &Care{cfg: cfg, db: db, dir: dir, msgs: msgs, sink: sink, clk: clk, log: log, p: newProjection()}
	c.recent.init()
	if err := c.loadRecent(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// leaseTTL bounds how long the projection stops when its instance dies:
// another takes it over once the lease lapses.
const leaseTTL = 15 * time.Second

// leaseName is the store lease whose holder projects.
const leaseName = "care"

// ErrFenced is returned by a step whose instance lost the care lease to
// another (it was paused past leaseTTL, or cut off from the store): its
// write would count the rollup's changes a second time.
var ErrFenced = errors.New("care lease taken over by another instance")

// recentEvery is how often the index of recent interruptions is read
// again from the store: by the instances that do not project, to see what
// the projecting one wrote, and by that one, to drop what left the window.
const recentEvery = 5 * time.Minute

// Run follows the rules' output until ctx is done. In distributed mode
// every instance runs it and one at a time, the holder of the care lease,
// projects; the others refresh their index of recent interruptions.
func (c *Care) Run(ctx context.Context) error {
	var recentAt time.Time
	for ctx.Err() == nil {
		l, err := store.AcquireLease(ctx, c.db, leaseName, store.LeaseHolder("care"), leaseTTL)
		if err != nil {
			var held *store.HeldError
			if !errors.As(err, &held) && ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("cannot take the care lease; trying again")
			}
			if time.Since(recentAt) >= recentEvery {
				recentAt = time.Now()
				c.refreshRecent(ctx)
			}
			sleep(ctx, leaseTTL)
			continue
		}
		c.follow(ctx, l)
	}
	return nil
}

func (c *Care) refreshRecent(ctx context.Context) {
	if err := c.loadRecent(ctx); err != nil && ctx.Err() == nil {
		c.log.Warn().Err(err).Msg("cannot read recent interruptions; the outage SMS counts on the last read")
	}
}

// follow projects while l is held.
func (c *Care) follow(ctx context.Context, l *store.Lease) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan error, 1)
	go func() { lost <- l.Run(lctx) }()
	c.p = newProjection() // another instance may have projected meanwhile
	c.holder = l.Holder()
	defer func() { c.holder = "" }()
	var loaded bool
	pruneAt := time.Now().Add(time.Minute)
	recentAt := time.Now()
	for {
		if time.Since(recentAt) >= recentEvery {
			recentAt = time.Now()
			c.refreshRecent(lctx)
		}
		if time.Now().After(pruneAt) {
			pruneAt = time.Now().Add(pruneEvery)
			before := c.clk.Now().Add(-time.Duration(c.cfg.History))
			if n, err := c.Prune(lctx, before); err != nil && lctx.Err() == nil {
				c.log.Warn().Err(err).Int64("pruned", n).Msg("cannot prune care history; trying again later")
			} else if n > 0 {
				c.log.Info().Int64("pruned", n).Time("before", before).Msg("care history pruned")
			}
		}
		if !loaded {
			if err := c.load(lctx); err != nil {
				c.log.Warn().Err(err).Msg("cannot load the care projection; trying again")
			} else {
				loaded = true
			}
		}
		if loaded {
			if _, err := c.Step(lctx); errors.Is(err, ErrFenced) {
				c.log.Warn().Err(err).Msg("care projection stops here: another instance projects")
				return
			} else if err != nil && lctx.Err() == nil {
				c.log.Warn().Err(err).Msg("care projection step failed; trying again")
				loaded = false // memory may be ahead of the store
				c.p = newProjection()
			}
		}
		select {
		case err := <-lost:
			if err != nil && ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("care lease lost")
			}
			return
		case <-time.After(time.Duration(c.cfg.Follow)):
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// load reads the cursors and the open interruptions.
func (c *Care) load(ctx context.Context) error {
	var err error
	if c.p.recSeq, err = getState(ctx, c.db, "rec_seq"); err != nil {
		return err
	}
	if c.p.meterSeq, err = getState(ctx, c.db, "meter_seq"); err != nil {
		return err
	}
	rows, err := c.db.QueryContext(ctx, `SELECT DISTINCT outage FROM care_interruptions WHERE end_ns = 0`)
	if err != nil {
		return fmt.Errorf("cannot read open interruptions: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("cannot read open interruptions: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	recs, stamps, err := rules.ReadRecords(ctx, c.db, ids)
	if err != nil {
		return err
	}
	for i := range recs {
		rs := &recState{stamp: stamps[i], rec: recs[i], accts: map[string]*interruption{}, live: recs[i].Live()}
		if err := c.loadRows(ctx, rs, rs.rec.ID); err != nil {
			return err
		}
		c.p.recs[rs.rec.ID] = rs
	}
	return nil
}

// loadRows reads the stored rows of outage id into rs.
func (c *Care) loadRows(ctx context.Context, rs *recState, id string) error {
	rows, err := c.db.QueryContext(ctx, `SELECT account, grid, feeder, area, class, planned, start_ns, end_ns, open, reported, sms_ns, nth
		FROM care_interruptions WHERE outage = $1`, id)
	if err != nil {
		return fmt.Errorf("cannot read interruptions of %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		it := &interruption{outage: id}
		var planned, reported int64
		var open string
		if err := rows.Scan(&it.account, &it.grid, &it.feeder, &it.area, &it.class, &planned, &it.start, &it.end, &open, &reported, &it.sms, &it.nth); err != nil {
			return fmt.Errorf("cannot read interruptions of %s: %w", id, err)
		}
		it.planned, it.reported = planned != 0, reported != 0
		it.rolled = it.contribution(int64(c.cfg.SustainedAfter)) // stored with the row
		if open != "" {
			it.open = strings.Split(open, ",")
			for _, m := range it.open {
				c.p.openBy[m] = append(c.p.openBy[m], it)
			}
		}
		rs.accts[it.account] = it
	}
	return rows.Err()
}

// StepStats says what one step did.
type StepStats struct {
	Meters  int // meter changes read
	Records int // records read
	Written int // interruption rows written
}

// Step reads what the rules committed since the last step and writes the
// interruptions it changes. Run calls it; tests call it to catch up.
func (c *Care) Step(ctx context.Context) (StepStats, error) {
	p := c.p
	var st StepStats
	now := c.clk.Now()
	restoredAt := func(id string) int64 {
		if rs := p.recs[id]; rs != nil {
			return closedAt(&rs.rec)
		}
		return 0
	}
	meterSeq, err := rules.MeterChanges(ctx, c.db, p.meterSeq, func(ch rules.MeterChange) {
		st.Meters++
		p.meterChange(ch, restoredAt)
	})
	if err != nil {
		return st, err
	}
	stamps, err := rules.RecordStamps(ctx, c.db, p.recSeq)
	if err != nil {
		return st, err
	}
	var ids []string
	listed := map[string]bool{}
	for _, s := range stamps {
		listed[s.ID] = true
		if rs := p.recs[s.ID]; rs == nil || rs.stamp != s {
			ids = append(ids, s.ID)
		}
	}
	for id, rs := range p.recs {
		if rs.live && !listed[id] {
			ids = append(ids, id) // closed since the last look
		}
	}
	recs, rstamps, err := rules.ReadRecords(ctx, c.db, ids)
	if err != nil {
		return st, err
	}
	st.Records = len(recs)
	order := make([]int, len(recs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return recs[order[a]].Seq < recs[order[b]].Seq })
	var closed []string
	recSeq := p.recSeq
	for _, i := range order {
		r := recs[i]
		recSeq = max(recSeq, r.Seq)
		rs := p.recs[r.ID]
		if rs == nil {
			rs = &recState{accts: map[string]*interruption{}}
			if err := c.loadRows(ctx, rs, r.ID); err != nil {
				return st, err
			}
			for _, a := range r.Aliases {
				if p.recs[a] == nil {
					old := &recState{accts: map[string]*interruption{}}
					if err := c.loadRows(ctx, old, a); err != nil {
						return st, err
					}
					if len(old.accts) > 0 {
						p.recs[a] = old
					}
				}
			}
			p.recs[r.ID] = rs
		}
		wasOpen := closedAt(&rs.rec) == 0
		rs.stamp, rs.rec, rs.live = rstamps[i], r, r.Live()
		if r.Merged() {
			continue // its rows move when the record that took it is read
		}
		p.absorb(rs)
		p.applyRecord(c.dir, rs, now.UnixNano())
		if wasOpen && closedAt(&r) > 0 && r.Status == "restored" {
			closed = append(closed, r.ID)
		}
	}
	if now.Sub(c.smsAt) >= smsEvery {
		if err := c.fillSMS(ctx, now); err != nil {
			return st, err
		}
		c.smsAt = now
	}
	st.Written = len(p.dirty)
	sus := int64(c.cfg.SustainedAfter)
	// In the order they began, each numbered after the customer's earlier
	// ones of this same step are in the index (a catch-up projects several
	// of one customer at once). A failed write leaves them in the index:
	// the step is projected again and notes the same ones.
	slices.SortFunc(p.dirty, func(a, b *interruption) int { return cmp.Compare(a.start, b.start) })
	for _, it := range p.dirty {
		c.number(it, now.UnixNano())
		c.noteRecent(it)
		p.roll(it, sus)
	}
	if err := c.write(ctx, meterSeq, recSeq); err != nil {
		return st, err
	}
	p.meterSeq, p.recSeq = meterSeq, recSeq
	for _, it := range p.dirty {
		it.dirty = false
	}
	p.dirty, p.deleted, p.deltas = nil, nil, nil
	// After the rows are stored: the lists read them. A crash in between
	// loses the lists of this step's restorations, never sends one twice.
	if err := c.sendFollowups(ctx, closed, now); err != nil {
		return st, err
	}
	for id, rs := range p.recs {
		if rs.done() && now.Sub(time.Unix(0, closedAt(&rs.rec))) > smsWindow {
			delete(p.recs, id)
		}
	}
	p.pruneSpans(now.UnixNano())
	metricSteps.Inc()
	metricRows.Add(float64(st.Written))
	metricOpen.Set(float64(p.openCount()))
	return st, nil
}

// openCount is how many customers the projection holds in open interruptions.
func (p *projection) openCount() int {
	n := 0
	for _, rs := range p.recs {
		for _, it := range rs.accts {
			if it.end == 0 {
				n++
			}
		}
	}
	return n
}

// spanKeep is how long a closed span is kept for a record read late.
const spanKeep = 24 * time.Hour

func (p *projection) pruneSpans(now int64) {
	p.steps++
	if len(p.spans) < 100000 && p.steps%100 != 0 {
		return
	}
	for m, s := range p.spans {
		if s.back != 0 && now-s.back > int64(spanKeep) {
			delete(p.spans, m)
		}
	}
}

// write stores the step's rows and cursors at once; a step that changed
// neither writes nothing. On SQLite it takes the store's write gate as an
// ordinary writer: a rules commit waiting there goes first.
func (c *Care) write(ctx context.Context, meterSeq, recSeq int64) error {
	p := c.p
	if len(p.dirty)+len(p.deleted)+len(p.deltas) == 0 && meterSeq == p.meterSeq && recSeq == p.recSeq {
		return nil
	}
	unlock := c.db.LockWrite(false)
	defer unlock()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin care transaction: %w", err)
	}
	defer tx.Rollback()
	for _, id := range p.deleted {
		if _, err := tx.ExecContext(ctx, `DELETE FROM care_interruptions WHERE outage = $1`, id); err != nil {
			return fmt.Errorf("cannot move interruptions of %s: %w", id, err)
		}
	}
	vals := make([]any, 0, len(p.dirty)*len(interruptionCols))
	for _, it := range p.dirty {
		vals = append(vals, it.values()...)
	}
	if err := store.Upsert(ctx, tx, c.db.Postgres(), "care_interruptions", interruptionCols, 2, vals); err != nil {
		return err
	}
	if err := writeDaily(ctx, tx, c.db.Postgres(), p.deltas); err != nil {
		return err
	}
	if err := c.mergeCalls(ctx, tx, p); err != nil {
		return err
	}
	if err := setState(ctx, tx, "meter_seq", meterSeq); err != nil {
		return err
	}
	if err := setState(ctx, tx, "rec_seq", recSeq); err != nil {
		return err
	}
	if err := c.fence(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit care transaction: %w", err)
	}
	return nil
}

// fence fails the step's transaction when another instance holds the care
// lease now. It reads the lease last, once the transaction writes: on
// PostgreSQL FOR SHARE, so a takeover waits for this commit; on SQLite
// the write lock already orders it.
func (c *Care) fence(ctx context.Context, tx *sql.Tx) error {
	if c.holder == "" {
		return nil
	}
	q := `SELECT holder FROM store_leases WHERE name = $1`
	if c.db.Postgres() {
		q += ` FOR SHARE`
	}
	var h string
	err := tx.QueryRowContext(ctx, q, leaseName).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) || err == nil && h != c.holder {
		return ErrFenced
	}
	if err != nil {
		return fmt.Errorf("cannot check the care lease: %w", err)
	}
	return nil
}

// mergeCalls moves the calls recorded under merged records' ids to the
// record that took them.
func (c *Care) mergeCalls(ctx context.Context, tx *sql.Tx, p *projection) error {
	for _, rs := range p.recs {
		for _, a := range rs.rec.Aliases {
			if !slices.Contains(p.deleted, a) {
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE care_calls SET outage = $1 WHERE outage = $2`, rs.rec.ID, a); err != nil {
				return fmt.Errorf("cannot move calls of %s: %w", a, err)
			}
		}
	}
	return nil
}

func (c *Care) reachable(account string) bool {
	a, ok := c.dir.Account(account)
	return ok && hasMobile(a)
}

// SMS times are filled in for a record's customers for smsWindow after it
// closes, every smsEvery: a storm's messages go out over minutes. After a
// record's first look, each look reads only the messages sent since the
// last one, less smsMargin: a message is recorded sent a little after it
// went (within its claim's lease), by an instance whose clock may differ
// from this one's by a little.
const (
	smsEvery  = 30 * time.Second
	smsWindow = time.Hour
	smsMargin = time.Minute
)

// fillSMS sets when the first SMS of each record reached its customers,
// for the records that miss some: the first time, every message of theirs,
// 200 records a read; after that, in one read, the messages sent since the
// last look. A customer no SMS can reach (no mobile number, opted out)
// keeps no record due: a storm's records nearly all have one.
func (c *Care) fillSMS(ctx context.Context, now time.Time) error {
	if c.msgs == nil {
		return nil
	}
	var due []*recState
	for _, rs := range c.p.recs {
		if !rs.live && closedAt(&rs.rec) > 0 && now.Sub(time.Unix(0, closedAt(&rs.rec))) > smsWindow {
			continue
		}
		for _, it := range rs.accts {
			if it.sms == 0 && c.reachable(it.account) {
				due = append(due, rs)
				break
			}
		}
	}
	apply := func(recs []*recState, first map[string]map[string]int64) {
		for _, rs := range recs {
			rs.smsAt = now.UnixNano()
			for _, ref := range append([]string{rs.rec.ID}, rs.rec.Aliases...) {
				for acct, at := range first[ref] {
					if it := rs.accts[acct]; it != nil && (it.sms == 0 || at < it.sms) {
						it.sms = at
						c.p.touch(it)
					}
				}
			}
		}
	}
	// Records looked at before: one read of the messages sent since the
	// earliest of their last looks, less smsMargin, whatever their record.
	var fresh, seen []*recState
	since := now.UnixNano()
	for _, rs := range due {
		if rs.smsAt == 0 {
			fresh = append(fresh, rs)
		} else {
			seen = append(seen, rs)
			since = min(since, rs.smsAt)
		}
	}
	if len(seen) > 0 {
		first, err := c.msgs.FirstSent(ctx, nil, since-int64(smsMargin))
		if err != nil {
			return err
		}
		apply(seen, first)
	}
	// Records never looked at: every message of theirs, 200 records a read.
	for chunk := range slices.Chunk(fresh, 200) {
		var refs []string
		for _, rs := range chunk {
			refs = append(append(refs, rs.rec.ID), rs.rec.Aliases...)
		}
		first, err := c.msgs.FirstSent(ctx, refs, 0)
		if err != nil {
			return err
		}
		apply(chunk, first)
	}
	return nil
}
