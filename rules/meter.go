package rules

import (
	"slices"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// Last-seen times are persisted coarsely. A reading of a meter with no live
// outage that changes nothing but its last-seen time, or that is the
// meter's first sign of power (see powered), costs no store write:
// the time stays in memory, and is written with the meter's next real
// change, when the meter joins an outage it began before, or by the sweep
// that starts every seenFlushEvery (by the engine's clock) and walks all
// meters, seenSweepChunk per tick, marking those whose last-seen time moved.
// A graceful stop writes them all (flushSeen). A crash therefore loses at
// most the last-seen times and first sights newer than the last sweep: a
// restarted engine may show a meter's last sign of power up to
// seenFlushEvery (plus one sweep, about len(meters)/seenSweepChunk ticks)
// older than it was, or a meter first seen since as not yet seen. No decision depends on such a time: the rules decide
// on last-seen only for members of a live outage, whose times are written
// with every change (see powered and join); a stale one is older than the
// outage's start either way, and only the last-seen time a verification
// shows for a dark meter is older. The period is well above a meter's
// reading interval (15 min), so a sweep writes each meter about once, not
// each reading: 200k meters cost one write each per hour.
const (
	seenFlushEvery = time.Hour
	seenSweepChunk = 20000
)

// lateGrace is the least a last gasp is held: one that arrives after its
// window would have closed still waits this long for a power_on behind it.
const lateGrace = 2 * time.Second

// Meter power states.
const (
	stUnknown uint8 = iota
	stPowered
	stDark
)

// Meter flags.
const (
	fTripped   uint8 = 1 << iota // relay opened by the utility
	fConfirmed                   // dark past the momentary window: counts toward its area
	fConcDark                    // darkened by its concentrator's last gasp
	fDarkSeen                    // seen dark during its current outage
)

// meterState is one meter. Times are Unix nanoseconds of event time.
// Guarded by Engine.mu.
type meterState struct {
	id      string
	account string // "" = not in the registry: state kept, no intents
	area    int32  // -1 = none
	grid    uint16 // index into Engine.gridNames
	class   uint8  // index into Engine.classNames
	outage  int32  // latest outage record holding the meter, live or closed; -1 = none
	st      uint8
	flags   uint8
	known   bool
	dirty   bool
	held    bool   // in Engine.held: changed in memory, not written (distributed mode)
	since   int64  // when st began
	seen    int64  // newest evidence of power (reading, power_on)
	saved   int64  // seen as last persisted
	lastTS  int64  // newest power event applied
	onTS    int64  // newest power_on applied (a meter sends one only after losing power)
	relayTS int64  // newest trip/close applied
	due     int64  // pending momentary decision; 0 = none
	ver     int64  // meter log seq of the state last written
	snap    bool   // in Engine.snapList: logged, not yet checkpointed
	regConc uint32 // index into Engine.concNames: its concentrator in the registry
}

func (m *meterState) tripped() bool { return m.flags&fTripped != 0 }

// dueItem is a pending momentary decision in the heap.
type dueItem struct {
	due int64
	m   int32
}

// dueHeap is a min-heap of pending decisions by due time. Entries whose
// meter no longer carries that due time are stale and skipped when popped.
type dueHeap []dueItem

func (h *dueHeap) push(it dueItem) {
	*h = append(*h, it)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].due <= s[i].due {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *dueHeap) pop() dueItem {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, r, min := 2*i+1, 2*i+2, i
		if l < n && s[l].due < s[min].due {
			min = l
		}
		if r < n && s[r].due < s[min].due {
			min = r
		}
		if min == i {
			break
		}
		s[i], s[min] = s[min], s[i]
		i = min
	}
	*h = s
	return top
}

// meter returns the index of meter id, interning it (and, for a meter of the
// registry, its whole area) on first sight. Unknown meters are looked up
// again each time, so a later contacts import makes them known.
// Lock: e.mu held.
func (e *Engine) meter(id, conc string) int32 {
	i, ok := e.meterIdx[id]
	if ok && e.meters[i].known {
		e.learnConc(i, conc)
		return i
	}
	info, known := e.dir.Meter(id)
	if !ok {
		i = int32(len(e.meters))
		if len(e.meters) == cap(e.meters) {
			// Room for the registry's whole fleet at once: growing a slice
			// of a million meters step by step copied it many times over.
			if l, ok := e.dir.(interface{ Len() int }); ok && l.Len() > len(e.meters) {
				e.meters = slices.Grow(e.meters, l.Len()-len(e.meters)+1)
			}
		}
		e.meters = append(e.meters, meterState{id: id, area: -1, outage: -1})
		e.meterIdx[id] = i
	}
	if known {
		m := &e.meters[i]
		m.known, m.account = true, info.Account
		m.grid, m.class = e.intern(&e.gridNames, info.Grid), uint8(e.intern(&e.classNames, string(info.Class)))
		m.regConc = e.concID(info.Concentrator)
		if conc == "" {
			conc = info.Concentrator
		}
		if info.Area != "" {
			a := e.area(info.Area) // may grow e.meters: m is stale after
			e.meters[i].area = a
		}
	}
	e.learnConc(i, conc)
	return i
}

// intern returns the index of v in *names, appending it on first sight.
// Grids and classes are few; meters hold their small index.
func (e *Engine) intern(names *[]string, v string) uint16 {
	key := internKey{names == &e.gridNames, v}
	if i, ok := e.names[key]; ok {
		return i
	}
	*names = append(*names, v)
	i := uint16(len(*names) - 1)
	e.names[key] = i
	return i
}

type internKey struct {
	grid bool
	v    string
}

func (e *Engine) gridOf(m *meterState) string  { return e.gridNames[m.grid] }
func (e *Engine) classOf(m *meterState) string { return e.classNames[m.class] }

// concID returns the index of concentrator c in e.concNames, appending it
// on first sight. Lock: e.mu held.
func (e *Engine) concID(c string) uint32 {
	id, ok := e.concIDs[c]
	if !ok {
		id = uint32(len(e.concNames))
		e.concNames = append(e.concNames, c)
		e.concIDs[c] = id
	}
	return id
}

// learnConc remembers that meter i publishes behind concentrator c.
func (e *Engine) learnConc(i int32, c string) {
	if c == "" {
		return
	}
	set := e.concMeters[c]
	if set == nil {
		set = map[int32]struct{}{}
		e.concMeters[c] = set
	}
	set[i] = struct{}{}
}

// hold notes, in distributed mode, that meter i changed in memory in a way
// that is written later (a last-seen time, the newest event time, a first
// sign of power): the next commit that stores meter-topic offsets writes
// it too (collect), so the offsets never run ahead of the state. Otherwise
// a takeover would read the input from those offsets over a state without
// its effects (a late power_off would darken a meter a reading showed
// powered after it). Lock: e.mu held.
func (e *Engine) hold(i int32) {
	if e.fence == nil {
		return
	}
	if m := &e.meters[i]; !m.dirty && !m.held {
		m.held = true
		e.held = append(e.held, i)
	}
}

func (e *Engine) markDirty(i int32) {
	m := &e.meters[i]
	if !m.dirty {
		m.dirty = true
		e.dirtyMeters = append(e.dirtyMeters, i)
	}
}

// powerOff applies a last gasp stamped ts that reached gridbell at arrived
// (zero: not known). A last gasp that was already
// older than Reorder when it reached gridbell (a replay, a head-end's
// backlog) darkens the meter but starts no decision: replays are harmless.
// Its age is taken at its arrival, not when the rules get to it: a storm
// queued in gridbell's own meter topic while the rules catch up (a
// takeover, a province's million gasps) is not a replay (at 10M customers
// 223,092 dark customers got no outage when its age was taken at
// application).
// Lock: e.mu held.
func (e *Engine) powerOff(i int32, ts int64, byConc bool, arrived time.Time) {
	m := &e.meters[i]
	if ts < m.lastTS || (ts == m.lastTS && m.st == stDark) {
		return
	}
	m.lastTS = ts
	e.hold(i)
	if m.st == stDark {
		return
	}
	m.st, m.since = stDark, ts
	m.flags &^= fConcDark
	if byConc {
		m.flags |= fConcDark
	}
	e.markDirty(i)
	now := e.clk.Now().UnixNano()
	at := now
	if !arrived.IsZero() {
		at = min(at, arrived.UnixNano())
	}
	if ts < at-int64(e.cfg.Reorder) {
		return
	}
	// a late gasp waits a moment for the power_on that may follow it in
	// the same backlog
	m.due = max(min(ts, now)+int64(e.cfg.Momentary), now+int64(lateGrace))
	e.pending.push(dueItem{due: m.due, m: i})
}

// powered applies evidence of power at ts: a power_on (on) or a reading.
// A concentrator's power_on does not light a meter that went dark on its
// own. Lock: e.mu held.
func (e *Engine) powered(i int32, ts int64, on, byConc bool) {
	m := &e.meters[i]
	if byConc && m.st == stDark && m.flags&fConcDark == 0 {
		return
	}
	if ts > m.seen {
		m.seen = ts
		// a live outage decides on it; otherwise the sweep writes it
		// (seenFlushEvery)
		if m.outage >= 0 && e.outages[m.outage].live() {
			e.markDirty(i)
		} else {
			e.hold(i)
		}
	}
	if ts < m.lastTS || (!on && m.st == stDark && ts <= m.since) {
		return
	}
	m.lastTS = ts
	e.hold(i)
	if on && ts > m.onTS {
		m.onTS = ts
		e.markDirty(i)
	}
	if m.st != stPowered {
		first := m.st == stUnknown && m.outage < 0
		m.st, m.since = stPowered, ts
		m.flags &^= fConcDark
		m.due = 0 // a pending decision is cancelled: a momentary blip
		if !first {
			e.markDirty(i)
		}
		// A meter's first sign of power, outside any outage, is written
		// like a last-seen time: by the sweep (its seen moved), or at a
		// graceful stop (flushSeen). Written at once, a fleet's first
		// round of readings cost a commit a message (a quarter of
		// single-message ingest's CPU). A crash before the sweep leaves
		// the meter unknown until its next reading, which is what it was
		// until this one: no decision is taken differently (an unknown
		// meter is told of an outage as a powered one not seen since its
		// start is).
		if m.flags&fConfirmed != 0 {
			m.flags &^= fConfirmed
			if m.area >= 0 {
				e.areas[m.area].dark--
			}
		}
	}
	if m.outage >= 0 {
		e.meterBack(i)
	}
}

// relay applies remote_trip (open) and remote_close.
// Lock: e.mu held.
func (e *Engine) relay(i int32, ts int64, open bool) {
	m := &e.meters[i]
	if ts < m.relayTS {
		return
	}
	m.relayTS = ts
	e.hold(i)
	was := m.tripped()
	if open {
		m.flags |= fTripped
	} else {
		m.flags &^= fTripped
	}
	if was != m.tripped() {
		e.markDirty(i)
	}
}

// applyMeterEvent applies one meter event. Lock: e.mu held.
func (e *Engine) applyMeterEvent(ev *event.MeterEvent, arrived time.Time) {
	i := e.meter(ev.Meter, ev.Concentrator)
	ts := ev.TS.UnixNano()
	switch ev.Type {
	case event.PowerOff:
		e.powerOff(i, ts, false, arrived)
	case event.PowerOn:
		e.powered(i, ts, true, false)
	case event.RemoteTrip:
		e.relay(i, ts, true)
	case event.RemoteClose:
		e.relay(i, ts, false)
	}
}

// applyConcentratorEvent applies a concentrator event to every meter behind
// it: those of the registry and those seen publishing on its topics.
// Lock: e.mu held.
func (e *Engine) applyConcentratorEvent(ev *event.ConcentratorEvent, arrived time.Time) {
	ts := ev.TS.UnixNano()
	for _, id := range e.dir.ConcentratorMeters(ev.Concentrator) {
		e.meter(id, ev.Concentrator)
	}
	for i := range e.concMeters[ev.Concentrator] {
		switch ev.Type {
		case event.PowerOff:
			e.powerOff(i, ts, true, arrived)
		case event.PowerOn:
			e.powered(i, ts, true, true)
		}
	}
}

// applyReading applies a reading: evidence of power and, for prepaid
// meters, a balance. Lock: e.mu held.
func (e *Engine) applyReading(r *event.Reading) {
	i := e.meter(r.Meter, r.Concentrator)
	if m := &e.meters[i]; m.known {
		r.Found, r.Area = event.LookupKnown, ""
		if m.area >= 0 {
			r.Area = e.areas[m.area].name
		}
	} else {
		r.Found = event.LookupUnknown
	}
	ts := r.TS.UnixNano()
	e.powered(i, ts, false, false)
	if r.Balance != nil && e.meters[i].known {
		e.balance(e.meters[i].account, *r.Balance, r.TS, "RDG-"+r.Meter, false)
	}
}

// decideDue takes every momentary decision due by now: a meter still dark
// is confirmed and its area is assessed. Lock: e.mu held.
func (e *Engine) decideDue(now int64) {
	touched := map[int32][]int32{}
	for len(e.pending) > 0 && e.pending[0].due <= now {
		it := e.pending.pop()
		m := &e.meters[it.m]
		if m.due != it.due || m.st != stDark {
			continue
		}
		if e.firstDue == 0 {
			e.firstDue = it.due
		}
		m.due = 0
		m.flags |= fConfirmed
		e.markDirty(it.m)
		if m.area < 0 {
			continue // not in the registry: state kept, no outage
		}
		e.areas[m.area].dark++
		touched[m.area] = append(touched[m.area], it.m)
	}
	if len(touched) == 0 {
		return
	}
	areas := make([]int32, 0, len(touched))
	for a := range touched {
		areas = append(areas, a)
	}
	slices.Sort(areas)
	for _, a := range areas {
		e.areaDark(a, touched[a])
	}
}

// sweepSeen marks, on an idle tick, up to seenSweepChunk meters whose
// last-seen time moved since it was written; a sweep starts every
// seenFlushEvery. Lock: e.mu held.
func (e *Engine) sweepSeen(now int64) {
	if e.sweepAt < 0 {
		if now < e.nextSweep {
			return
		}
		e.sweepAt, e.nextSweep = 0, now+int64(seenFlushEvery)
	}
	end := min(e.sweepAt+seenSweepChunk, len(e.meters))
	for i := e.sweepAt; i < end; i++ {
		if m := &e.meters[i]; m.seen > m.saved {
			e.markDirty(int32(i))
		}
	}
	e.sweepAt = end
	if end == len(e.meters) {
		e.sweepAt = -1
	}
}
