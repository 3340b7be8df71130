package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// ErrNotFound is returned for an outage id the rules do not know.
var ErrNotFound = errors.New("outage not found")

// ErrStopped is returned by calls made after Run has returned.
var ErrStopped = errors.New("rules engine stopped")

// request is one caller's work for the writer loop: events, or a function
// applied under the lock (Confirm, ReportStillOut, a tick).
type request struct {
	evs     []event.Event
	offsets map[int32]int64 // meter-topic input: next offset per partition (HandleAt)
	fn      func() error
	err     error
	done    chan error
}

// areaState is one transformer area. Guarded by Engine.mu.
type areaState struct {
	name    string
	meters  []int32
	dark    int   // meters confirmed dark
	rec     int32 // latest record covering the area; -1 = none
	loading bool
}

// Engine applies events to the rules' state and writes the intents they
// cause. One writer goroutine (Run) owns all changes; views read under mu.
type Engine struct {
	cfg  Config
	db   *store.DB
	dir  Directory
	gens generationer // dir, when it says when its answers change; nil otherwise
	sink IntentSink
	clk  clock.Clock
	log  zerolog.Logger

	reqs    chan *request
	stopped atomic.Pointer[chan struct{}] // closed when Run returns; a new one after Demote
	runCtx  context.Context               // Run's; written before the writer loop starts

	stormFlag atomic.Bool  // storm mode; written by the writer only
	maxLag    atomic.Int64 // the largest decision lag since start, ns
	fullLoads atomic.Int64 // loads of the whole state (FullLoads)

	mu    sync.RWMutex
	state // guarded by mu; replaced whole by load

	// reloading is set while memory may disagree with the store (a commit
	// failed) until a load succeeds; the writer applies no input meanwhile.
	reloading atomic.Bool
	health    health

	// distributed mode (cluster.go)
	running   atomic.Bool           // Run is running: this instance applies input
	remote    Forwarder             // where API writes go while not running; nil: single process
	fence     Fence                 // checked in every commit; nil: single process
	fenced    atomic.Pointer[error] // the fence refused a commit: Run stops (fencedOut)
	offsets   map[int32]int64
	offsetsAt time.Time // when offsets were last committed

	// per batch; written by the writer only
	firstDue      int64 // earliest momentary decision taken in the batch; 0 = none
	out           intentList
	batchKeys     map[string]struct{}
	touched       map[int32]struct{}
	dirtyMeters   []int32
	dirtyOutages  []int32
	dirtyLedger   map[int32]struct{} // records whose ledger changed
	dirtyAccounts []string
	dirtyDigests  []string
}

// state is everything the rules rebuild from the store. A reload builds a
// new one and swaps it in only when whole, so the rules never act on a
// partial state.
type state struct {
	meters     []meterState
	meterIdx   map[string]int32
	areas      []areaState
	areaIdx    map[string]int32
	concMeters map[string]map[int32]struct{}
	concNames  []string          // concentrators the registry names; 0 = none
	concIDs    map[string]uint32 // index into concNames
	pending    dueHeap
	outages    []*outage
	outageIdx  map[string]int32 // ids and aliases
	seq        int64
	accounts   map[string]*account
	digests    map[string]*digest
	stormHits  []time.Time
	gridNames  []string
	classNames []string
	names      map[internKey]uint16
	logSeq     int64   // last meter log row written
	snapList   []int32 // meters logged but not checkpointed
	held       []int32 // meters changed in memory, to write with the next offsets (hold)
	copyTrim   int64   // a copy's meter log start when it last pruned snapList (follow.go)
	dirGen     uint64  // directory generation the cached registry facts come from
	sweepAt    int     // next meter the last-seen sweep looks at; -1 = no sweep running
	nextSweep  int64   // when the next last-seen sweep starts (clock, Unix ns)
}

// New migrates the rules' tables and loads their state, so a restart
// resumes where the last run stopped, pending decisions included.
func New(cfg Config, db *store.DB, dir Directory, sink IntentSink, clk clock.Clock, log zerolog.Logger) (*Engine, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, db: db, dir: dir, sink: sink, clk: clk, log: log,
		reqs: make(chan *request, 1024),
	}
	e.stopped.Store(new(make(chan struct{})))
	e.gens, _ = dir.(generationer)
	stormGauge.Set(0)
	e.health.init()
	ctx := context.Background()
	if err := db.Migrate(ctx, "rules", migrations); err != nil {
		return nil, err
	}
	if err := e.load(ctx); err != nil {
		return nil, err
	}
	scraped.Store(e)
	return e, nil
}

// reset empties the in-memory state. Only loadState calls it, on a state
// not yet shared.
func (e *Engine) reset() {
	e.meters, e.meterIdx = nil, map[string]int32{}
	e.gridNames, e.classNames = []string{""}, []string{""}
	e.names = map[internKey]uint16{{true, ""}: 0, {false, ""}: 0}
	e.areas, e.areaIdx = nil, map[string]int32{}
	e.concMeters = map[string]map[int32]struct{}{}
	e.concNames, e.concIDs = []string{""}, map[string]uint32{"": 0}
	e.pending = nil
	e.outages, e.outageIdx, e.seq = nil, map[string]int32{}, 0
	e.accounts, e.digests = map[string]*account{}, map[string]*digest{}
	e.stormHits = nil
	e.logSeq, e.snapList, e.held = 0, nil, nil
	e.sweepAt, e.nextSweep = -1, e.clk.Now().Add(seenFlushEvery).UnixNano()
	e.resetBatch()
}

// resetBatch empties the per-batch fields. Writer only.
func (e *Engine) resetBatch() {
	e.out.reset()
	e.firstDue = 0
	e.batchKeys = map[string]struct{}{}
	e.touched = map[int32]struct{}{}
	e.dirtyMeters, e.dirtyOutages, e.dirtyAccounts, e.dirtyDigests = e.dirtyMeters[:0], e.dirtyOutages[:0], e.dirtyAccounts[:0], e.dirtyDigests[:0]
	e.dirtyLedger = map[int32]struct{}{}
}

// area returns the index of area name, loading its meters from the
// registry on first sight (again while it has none: contacts imported
// later). Lock: e.mu held.
func (e *Engine) area(name string) int32 {
	a, ok := e.areaIdx[name]
	if !ok {
		a = int32(len(e.areas))
		e.areas = append(e.areas, areaState{name: name, rec: -1})
		e.areaIdx[name] = a
	} else if len(e.areas[a].meters) > 0 || e.areas[a].loading {
		return a
	}
	e.loadArea(a)
	return a
}

// loadArea sets area a's meters from the registry. Lock: e.mu held.
func (e *Engine) loadArea(a int32) {
	e.areas[a].loading = true // interning its meters comes back here
	ids := e.dir.AreaMeters(e.areas[a].name)
	ms := make([]int32, 0, len(ids))
	for _, id := range ids {
		ms = append(ms, e.meter(id, ""))
	}
	e.areas[a].meters, e.areas[a].loading = ms, false
}

func (e *Engine) emit(in event.Intent) { e.out.add(in) }

// intentList is a batch's intents in emission order, in chunks: a storm's
// batch holds ~500k intents, and growing one slice to that copied them
// about five times over (1.3 of its 3.3 s, most of it in page faults and
// GC barriers). Writer only.
type intentList struct {
	chunks [][]event.Intent
	n      int
}

const intentChunk = 4096

func (l *intentList) add(in event.Intent) {
	if k := len(l.chunks); k == 0 || len(l.chunks[k-1]) == cap(l.chunks[k-1]) {
		l.chunks = append(l.chunks, make([]event.Intent, 0, min(intentChunk, max(16, l.n))))
	}
	k := len(l.chunks) - 1
	l.chunks[k] = append(l.chunks[k], in)
	l.n++
}

// reset empties l and lets its intents go.
func (l *intentList) reset() { *l = intentList{} }

// Handle applies evs and returns once their effects and intents are
// committed. Many concurrent callers share one transaction.
func (e *Engine) Handle(ctx context.Context, evs []event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	return e.call(ctx, &request{evs: evs})
}

func (e *Engine) call(ctx context.Context, r *request) error {
	r.done = make(chan error, 1)
	stopped := *e.stopped.Load()
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-stopped:
		return ErrStopped
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-stopped:
		select {
		case err := <-r.done:
			return err
		default:
			return ErrStopped
		}
	}
}

// Tick compares the stored timers with the clock now (the writer loop
// does it every cfg.Tick) and returns once the decisions are committed.
func (e *Engine) Tick(ctx context.Context) error {
	return e.call(ctx, &request{fn: func() error { return nil }})
}

// Run is the writer loop: it batches callers' requests into group commits
// and takes due decisions every Tick. It exits when ctx is done, after
// committing what it had taken.
func (e *Engine) Run(ctx context.Context) error {
	e.runCtx = ctx
	defer close(*e.stopped.Load())
	e.running.Store(true)
	defer e.running.Store(false)
	e.takeOver()
	scraped.Store(e)
	t := time.NewTicker(e.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.drain()
			return nil
		case r := <-e.reqs:
			e.process(e.gather(r))
		case <-t.C:
			e.process(nil)
		}
		if err := e.fencedErr(); err != nil {
			return err
		}
	}
}

// gather takes r and whatever else is queued, up to MaxBatch events.
func (e *Engine) gather(r *request) []*request {
	batch := []*request{r}
	n := len(r.evs)
	for n < e.cfg.MaxBatch {
		select {
		case r := <-e.reqs:
			batch = append(batch, r)
			n += len(r.evs)
		default:
			return batch
		}
	}
	return batch
}

// drain commits the requests already queued when Run is told to stop.
func (e *Engine) drain() {
	for e.fencedErr() == nil {
		select {
		case r := <-e.reqs:
			e.process(e.gather(r))
		default:
			e.flushSeen()
			return
		}
	}
}

// flushSeen writes every last-seen time and first sight the sweep has not
// written yet (meter.go), and every change held for the next offsets
// (hold), so a graceful stop loses none of them; only a crash does.
// Writer only.
func (e *Engine) flushSeen() {
	e.mu.Lock()
	for i := range e.meters {
		if m := &e.meters[i]; m.seen > m.saved {
			e.markDirty(int32(i))
		}
	}
	for _, i := range e.held {
		if e.meters[i].held {
			e.markDirty(i)
		}
	}
	e.held = e.held[:0]
	dirty := len(e.dirtyMeters) > 0
	e.mu.Unlock()
	if dirty && !e.reloading.Load() {
		e.process(nil)
	}
}

// process applies a batch and commits it in one transaction. If the store
// refuses to write the commit while it still reads (a full disk, a lock
// timeout: store.WriteRefused), the same commit is retried until it passes
// (retryCommit), the callers waiting. If the commit fails otherwise,
// every caller gets the error and the engine reloads its state from the
// store before it applies anything more (see reload), so state and store
// never disagree.
func (e *Engine) process(batch []*request) {
	if err := e.fencedErr(); err != nil {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	if e.reloading.Load() && !e.reload() {
		e.refuse(batch)
		return
	}
	ctx := context.Background()
	began := time.Now()
	e.mu.Lock()
	e.followDirectory()
	n := 0
	var oldest time.Time // the earliest arrival among the batch's events
	for _, r := range batch {
		if r.fn != nil {
			r.err = r.fn()
		}
		e.noteOffsets(r.offsets)
		for i := range r.evs {
			e.apply(&r.evs[i])
			if rc := r.evs[i].Received; !rc.IsZero() && (oldest.IsZero() || rc.Before(oldest)) {
				oldest = rc
			}
		}
		n += len(r.evs)
	}
	e.decide()
	w := e.collect(len(batch) == 0)
	intents, firstDue := e.out.byPriority(), e.firstDue
	e.mu.Unlock()
	applied := time.Since(began)

	err := e.commit(ctx, w, intents)
	if err != nil && store.WriteRefused(err) && e.runCtx != nil {
		err = e.retryCommit(e.runCtx, w, intents, err, n)
	}
	switch {
	case err != nil && e.fence != nil && errors.Is(err, store.ErrLeaseLost):
		e.fencedOut(err, n)
	case err != nil:
		err = e.commitFailed(err, n)
	default:
		e.health.committed()
		e.observe(n, len(intents), oldest, firstDue)
		if took := time.Since(began); took > time.Second {
			e.log.Warn().Int("events", n).Int("intents", len(intents)).Int("requests", len(batch)).
				Dur("apply", applied).Dur("took", took).Msg("slow rules batch")
		}
	}
	e.resetBatch() // the per-batch fields are the writer's: no lock
	for _, r := range batch {
		if err != nil {
			r.done <- err
		} else {
			r.done <- r.err
		}
	}
}

// observe counts a committed batch of n events and the intents it wrote.
// oldest is the earliest arrival among its events (zero: none) and
// firstDue the earliest momentary window it decided (unix ns; 0: none).
func (e *Engine) observe(n, intents int, oldest time.Time, firstDue int64) {
	eventsApplied.Add(float64(n))
	intentsWritten.Add(float64(intents))
	batchesDone.Inc()
	if intents > 0 && !oldest.IsZero() {
		eventToIntent.Observe(max(0, time.Since(oldest).Seconds()))
	}
	if firstDue != 0 {
		lag := e.clk.Now().UnixNano() - firstDue
		decisionLag.Observe(float64(lag) / 1e9)
		if lag > e.maxLag.Load() { // only the writer stores
			e.maxLag.Store(lag)
		}
	}
}

// MaxDecisionLag is the longest a due momentary decision waited for its
// commit since start (the storm benchmark reports it).
func (e *Engine) MaxDecisionLag() time.Duration { return time.Duration(e.maxLag.Load()) }

// byPriority returns the intents most urgent first, keeping the order
// within a priority (a stable bucket sort into one slice of the exact size).
func (l *intentList) byPriority() []event.Intent {
	if l.n == 0 {
		return nil
	}
	if len(l.chunks) == 1 && slices.IsSortedFunc(l.chunks[0], func(a, b event.Intent) int { return cmp.Compare(a.Priority, b.Priority) }) {
		return l.chunks[0]
	}
	out := make([]event.Intent, 0, l.n)
	for p := event.PriorityCritical; p <= event.PriorityBilling; p++ {
		for _, c := range l.chunks {
			for i := range c {
				if c[i].Priority == p {
					out = append(out, c[i])
				}
			}
		}
	}
	for _, c := range l.chunks { // priorities beyond the known ones, last
		for i := range c {
			if c[i].Priority > event.PriorityBilling || c[i].Priority < event.PriorityCritical {
				out = append(out, c[i])
			}
		}
	}
	return out
}

// apply applies one event. Lock: e.mu held.
func (e *Engine) apply(ev *event.Event) {
	switch {
	case ev.Reading != nil:
		e.applyReading(ev.Reading)
	case ev.Meter != nil:
		e.applyMeterEvent(ev.Meter, ev.Received)
	case ev.Concentrator != nil:
		e.applyConcentratorEvent(ev.Concentrator, ev.Received)
	case ev.Outage != nil:
		e.applyOMS(ev.Outage)
	case ev.Billing != nil:
		e.applyBilling(ev.Billing)
	case ev.Command != nil:
		e.applyCommand(ev.Command)
	}
}

// decide takes every timer decision due by now. Lock: e.mu held.
func (e *Engine) decide() {
	now := e.clk.Now()
	e.decideDue(now.UnixNano())
	e.reminders(now)
	e.settle()
	e.stormEval(now)
	e.flushDigests(now)
}

// Confirm records a dispatcher's confirmation of the restoration and closes
// the outage. Customers whose meters are still dark are still not told.
func (e *Engine) Confirm(ctx context.Context, id, by string) error {
	if e.forwarding() { // distributed mode, not running the rules: checked like ConfirmWithReason
		return e.confirmRemote(ctx, id, by, "")
	}
	return e.call(ctx, &request{fn: func() error {
		o, ok := e.outageIdx[id]
		if !ok {
			return fmt.Errorf("cannot confirm outage %s: %w", id, ErrNotFound)
		}
		return e.confirm(e.outages[o], by)
	}})
}

// confirm records by's confirmation of r and closes it. Lock: e.mu held.
func (e *Engine) confirm(r *outage, by string) error {
	now := e.clk.Now()
	r.ConfirmedBy, r.ConfirmedAt = by, &now
	if r.Status == statusActive {
		r.Status = statusRestored
		if r.RestoredAt == nil {
			r.RestoredAt = &now
		}
	}
	e.touch(r)
	return nil
}

// ReportStillOut records that a customer replied they are still out. Each
// account (by default every account of phone) whose meter the rules believe
// powered is listed in its outage's Verification.ReportedOut.
func (e *Engine) ReportStillOut(ctx context.Context, phone string, accounts []string) error {
	if e.forwarding() {
		return e.forward(ctx, &event.Command{Kind: event.CommandStillOut, Phone: phone, Accounts: accounts}, func() bool { return true })
	}
	return e.call(ctx, &request{fn: func() error {
		if len(accounts) == 0 {
			accounts = e.dir.AccountsByPhone(phone)
		}
		for _, a := range accounts {
			e.reportOut(a)
		}
		return nil
	}})
}

// reportOut lists account a in the latest outage holding one of its meters
// when gridbell believes that meter powered. Lock: e.mu held.
func (e *Engine) reportOut(a string) {
	acct, ok := e.dir.Account(a)
	if !ok {
		return
	}
	for _, id := range acct.Meters {
		i, ok := e.meterIdx[id]
		if !ok || e.meters[i].outage < 0 || e.meters[i].st != stPowered {
			continue
		}
		r := e.outages[e.meters[i].outage]
		if !slices.Contains(r.ReportedOut, a) {
			r.ReportedOut = append(r.ReportedOut, a)
			e.touch(r)
		}
		return
	}
}

// StormMode reports whether the rules are in storm mode.
func (e *Engine) StormMode() bool { return e.stormFlag.Load() }
