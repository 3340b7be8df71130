package rules

import (
	"cmp"
	"slices"
	"time"
)

// AreaState is one transformer area as the storm overview shows it.
type AreaState struct {
	Area      string `json:"area"`
	Name      string `json:"name,omitempty"` // the area's name in the contacts file, filled by the HTTP layer
	Grid      string `json:"grid"`
	Feeder    string `json:"feeder"`
	Customers int    `json:"customers"`        // accounts with a meter in the area
	Out       int    `json:"out"`              // of them, those with a meter dark now
	Outage    string `json:"outage,omitempty"` // the live outage covering the area
	// State is ok (no one out), out (everyone out), partial (some out) or
	// restoring (a live outage, no meter dark: waiting for verification).
	State string `json:"state"`
}

// AreaStates lists every transformer area of the registry, by grid and name.
func (e *Engine) AreaStates() []AreaState {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]AreaState, 0, len(e.areas))
	for ai := range e.areas {
		if st, ok := e.areaState(int32(ai)); ok {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b AreaState) int {
		if a.Grid != b.Grid {
			if a.Grid < b.Grid {
				return -1
			}
			return 1
		}
		if a.Area < b.Area {
			return -1
		}
		if a.Area > b.Area {
			return 1
		}
		return 0
	})
	return out
}

// areaState sums area ai. Lock: e.mu held (read).
func (e *Engine) areaState(ai int32) (AreaState, bool) {
	a := &e.areas[ai]
	st := AreaState{Area: a.name}
	accts, dark := map[string]bool{}, map[string]bool{}
	for _, i := range a.meters {
		m := &e.meters[i]
		if !m.known {
			continue
		}
		if st.Grid == "" {
			st.Grid = e.gridOf(m)
			if info, ok := e.dir.Meter(m.id); ok {
				st.Feeder = info.Feeder
			}
		}
		accts[m.account] = true
		if e.isOut(i) {
			dark[m.account] = true
		}
	}
	if len(accts) == 0 {
		return st, false
	}
	st.Customers, st.Out = len(accts), len(dark)
	if a.rec >= 0 && int(a.rec) < len(e.outages) {
		if r := e.resolve(e.outages[a.rec]); r.live() {
			st.Outage = r.ID
		}
	}
	switch {
	case st.Out == 0 && st.Outage != "":
		st.State = "restoring"
	case st.Out == 0:
		st.State = "ok"
	case st.Out == st.Customers:
		st.State = "out"
	default:
		st.State = "partial"
	}
	return st, true
}

// MeterOutage is one meter of a customer and the latest outage that held it.
type MeterOutage struct {
	Meter    string     `json:"meter"`
	Powered  bool       `json:"powered"`
	State    string     `json:"state"` // MeterOut, MeterBack, MeterPowered or MeterUnknown
	LastSeen *time.Time `json:"last_seen"`
	Outage   *Outage    `json:"outage"` // nil: never in an outage
}

// A meter's state as the hotline tells it (MeterOutage.State).
const (
	MeterOut     = "out"     // dark by its own report, or held dark by a live outage
	MeterBack    = "back"    // a live outage holds it and it is verified powered again
	MeterPowered = "powered" // no live outage holds it and it is not dark
	MeterUnknown = "unknown" // gridbell has no word of it: not in the contacts, never heard, or its own breaker tripped
)

// MetersOf tells, for each meter of account, whether it is powered and
// which outage (live or closed) last held it: what the hotline needs.
func (e *Engine) MetersOf(account string) []MeterOutage {
	acct, ok := e.dir.Account(account)
	if !ok {
		return nil
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := []MeterOutage{}
	for _, id := range acct.Meters {
		mo := MeterOutage{Meter: id, State: MeterUnknown}
		if i, ok := e.meterIdx[id]; ok {
			m := &e.meters[i]
			mo.Powered = !e.isOut(i)
			mo.State = e.meterState(i)
			if last := max(m.seen, m.since); last > 0 {
				t := time.Unix(0, last).UTC()
				mo.LastSeen = &t
			}
			if m.outage >= 0 && int(m.outage) < len(e.outages) {
				v := e.view(e.resolve(e.outages[m.outage]), nil)
				mo.Outage = &v
			}
		}
		out = append(out, mo)
	}
	return out
}

// meterState is meter i's MeterOutage.State. Lock: e.mu held (read).
func (e *Engine) meterState(i int32) string {
	m := &e.meters[i]
	if e.isOut(i) {
		return MeterOut
	}
	if !m.known || m.tripped() {
		return MeterUnknown
	}
	if m.outage >= 0 && int(m.outage) < len(e.outages) {
		if r := e.outages[m.outage]; r.live() {
			if e.meterVerdict(r, i) == "restored" {
				return MeterBack
			}
			return MeterUnknown
		}
	}
	return MeterPowered
}

// resolve is the record r was merged into, or r. Lock: e.mu held (read).
func (e *Engine) resolve(r *outage) *outage {
	if r.Status == statusMerged {
		if o, ok := e.outageIdx[r.ID]; ok {
			return e.outages[o]
		}
	}
	return r
}

// isOut reports whether meter i is out now: dark by its own report, or
// without news since a live outage holding it began. Lock: e.mu held (read).
func (e *Engine) isOut(i int32) bool {
	m := &e.meters[i]
	if m.tripped() {
		return false
	}
	if m.st == stDark {
		return true
	}
	if m.outage < 0 || int(m.outage) >= len(e.outages) {
		return false
	}
	r := e.outages[m.outage]
	return r.live() && e.meterVerdict(r, i) == "dark"
}

// PendingArea is a transformer area with meters gone dark whose momentary
// window still runs: no outage is decided yet, and the page says so.
type PendingArea struct {
	Area     string    `json:"area"`
	Name     string    `json:"name,omitempty"` // the area's name in the contacts file, filled by the HTTP layer
	Grid     string    `json:"grid"`
	Meters   int       `json:"meters"`    // dark meters awaiting their decision
	DecideAt time.Time `json:"decide_at"` // the earliest of their windows closing
}

// Pending lists the areas with meters awaiting their momentary decision, by
// grid and area.
func (e *Engine) Pending() []PendingArea {
	e.mu.RLock()
	defer e.mu.RUnlock()
	byArea := map[int32]*PendingArea{}
	for _, it := range e.pending {
		m := &e.meters[it.m]
		if m.due != it.due || m.st != stDark || m.area < 0 {
			continue // stale: decided or cancelled
		}
		p := byArea[m.area]
		if p == nil {
			p = &PendingArea{Area: e.areas[m.area].name, Grid: e.gridOf(m), DecideAt: time.Unix(0, it.due).UTC()}
			byArea[m.area] = p
		}
		p.Meters++
		if d := time.Unix(0, it.due).UTC(); d.Before(p.DecideAt) {
			p.DecideAt = d
		}
	}
	out := make([]PendingArea, 0, len(byArea))
	for _, p := range byArea {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b PendingArea) int {
		return cmp.Or(cmp.Compare(a.Grid, b.Grid), cmp.Compare(a.Area, b.Area))
	})
	return out
}
