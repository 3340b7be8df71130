package rules

import (
	"context"
	"database/sql"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
)

// IntentSink receives intents inside the rules' transaction (implemented by
// notify's outbox). An error rolls the whole batch back.
type IntentSink interface {
	Enqueue(ctx context.Context, tx *sql.Tx, intents []event.Intent) error
}

// Directory is what the rules read of the customer registry
// (*contacts.Registry implements it). A Directory that also has
// Generation() uint64, as the registry does, is followed: when it grows,
// the facts the engine cached from it are read again.
type Directory interface {
	Meter(id string) (contacts.MeterInfo, bool)
	AreaMeters(area string) []string
	ConcentratorMeters(c string) []string
	FeederAreas(f string) []string
	Account(acct string) (contacts.Account, bool)
	Grid(g string) (contacts.GridInfo, bool)
	AccountsByPhone(e164 string) []string
}

// generationer is a Directory that says when its answers changed: the
// registry's generation grows with every import or refresh. The engine
// caches each meter's registry facts, so it re-reads them when it moves.
type generationer interface {
	Generation() uint64
}

// followDirectory refreshes the cached registry facts when the directory's
// generation has moved since they were read. Lock: e.mu held; writer only.
func (e *Engine) followDirectory() {
	if e.gens == nil {
		return
	}
	g := e.gens.Generation()
	if g == e.dirGen {
		return
	}
	e.dirGen = g
	began := time.Now()
	st := e.refreshDirectory()
	e.log.Info().Uint64("generation", g).Int("meters", len(e.meters)).Int("areas", len(e.areas)).
		Int("added", st.added).Int("changed", st.changed).Int("retired", st.retired).
		Dur("took", time.Since(began)).Msg("registry facts refreshed")
}

// refreshStats counts what a refresh changed among the cached meters.
type refreshStats struct{ added, changed, retired int }

// refreshDirectory re-reads from the directory the facts cached for every
// meter (known, account, area, grid, class, concentrator) and the members
// of every area, then recounts each area's dark meters. A retired meter
// becomes unknown: its power state is kept, and it causes no intents.
// Outage records, their members and what their customers were told are
// kept as they are: a meter moved out of an outage's area stays its member
// until the outage closes, and an OMS message widens its scope to the
// areas' new members.
// Lock: e.mu held.
func (e *Engine) refreshDirectory() refreshStats {
	var st refreshStats
	n := int32(len(e.meters))
	for i := range n { // meters interned meanwhile are read fresh
		e.refreshMeter(i, &st)
	}
	for a := range int32(len(e.areas)) {
		e.loadArea(a)
	}
	for i := n; i < int32(len(e.meters)); i++ {
		if e.meters[i].known {
			st.added++
		}
	}
	for a := range e.areas {
		e.areas[a].dark = 0
	}
	for i := range e.meters {
		m := &e.meters[i]
		if m.flags&fConfirmed != 0 && m.st == stDark && m.area >= 0 {
			e.areas[m.area].dark++
		}
	}
	return st
}

// refreshMeter re-reads meter i's registry facts. Lock: e.mu held.
func (e *Engine) refreshMeter(i int32, st *refreshStats) {
	info, known := e.dir.Meter(e.meters[i].id)
	if !known {
		m := &e.meters[i]
		if m.known {
			st.retired++
		}
		m.known, m.account, m.area, m.grid, m.class = false, "", -1, 0, 0
		e.setRegConc(i, "")
		return
	}
	area := int32(-1)
	if info.Area != "" {
		area = e.area(info.Area) // may grow e.meters
	}
	grid, class := e.intern(&e.gridNames, info.Grid), uint8(e.intern(&e.classNames, string(info.Class)))
	m := &e.meters[i]
	switch {
	case !m.known:
		st.added++
	case m.account != info.Account || m.area != area || m.grid != grid || m.class != class:
		st.changed++
	}
	m.known, m.account, m.area, m.grid, m.class = true, info.Account, area, grid, class
	e.setRegConc(i, info.Concentrator)
}

// setRegConc puts meter i behind concentrator c, as the registry now says,
// and no longer behind the one it said before: that one's last gasp would
// darken a meter no longer there. A meter still publishing on its topics
// is learnt again from its next message. Lock: e.mu held.
func (e *Engine) setRegConc(i int32, c string) {
	id := e.concID(c)
	if old := e.meters[i].regConc; old != 0 && old != id {
		delete(e.concMeters[e.concNames[old]], i)
	}
	e.meters[i].regConc = id
	e.learnConc(i, c)
}
