package rules

import (
	"slices"
	"time"
)

// A manager sees only the customers, meters and counts of its own grids,
// in every answer (docs/interfaces.md §6). The views below take the grids a caller
// may see; nil means all of them (admins and dispatchers). An outage with
// none of the grids' customers is not shown at all.

// in is c as seen from grids: the sum of those grids' counts and the union
// of their areas; nil grids see the whole record.
func (c *closedView) in(grids []string) (Counts, []string) {
	if grids == nil {
		return c.Counts, slices.Clone(c.Areas)
	}
	var n Counts
	areas := []string{}
	for _, g := range grids {
		gv, ok := c.Grids[g]
		if !ok {
			continue
		}
		n.Affected += gv.Counts.Affected
		n.Restored += gv.Counts.Restored
		n.Dark += gv.Counts.Dark
		for _, a := range gv.Areas {
			if !slices.Contains(areas, a) {
				areas = append(areas, a)
			}
		}
	}
	return n, areas
}

// visible reports whether r holds a customer of grids. Lock: e.mu held (read).
func (e *Engine) visible(r *outage, grids []string) bool {
	if grids == nil {
		return true
	}
	if c := r.Closed; c != nil && !r.live() {
		return slices.ContainsFunc(grids, func(g string) bool { _, ok := c.Grids[g]; return ok })
	}
	for _, i := range r.members {
		if m := &e.meters[i]; m.outage == r.idx && m.known && slices.Contains(grids, e.gridOf(m)) {
			return true
		}
	}
	return false
}

// OutagesIn is Outages as seen from grids: only the outages that hold a
// customer of grids, each with those customers' areas and counts alone.
func (e *Engine) OutagesIn(status string, grids []string) []Outage {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := []Outage{}
	for i := len(e.outages) - 1; i >= 0; i-- {
		r := e.outages[i]
		if r.Status == statusMerged || r.Status == "" || (status != "" && r.Status != status) || !e.visible(r, grids) {
			continue
		}
		out = append(out, e.view(r, grids))
	}
	return out
}

// OutageIn is Outage as seen from grids; false when the outage holds no
// customer of grids.
func (e *Engine) OutageIn(id string, grids []string) (Outage, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	o, ok := e.outageIdx[id]
	if !ok || !e.visible(e.outages[o], grids) {
		return Outage{}, false
	}
	return e.view(e.outages[o], grids), true
}

// VerificationIn is Verification as seen from grids: the meters of those
// grids' customers, and the still-out replies of those customers; false
// when the outage holds no customer of grids.
func (e *Engine) VerificationIn(id string, grids []string) (Verification, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	o, ok := e.outageIdx[id]
	if !ok || !e.visible(e.outages[o], grids) {
		return Verification{}, false
	}
	r := e.outages[o]
	v := Verification{OutageID: r.ID, Restored: []string{}, Dark: []DarkMeter{}, Unknown: []string{}, ReportedOut: []string{}}
	for _, a := range r.ReportedOut {
		if grids == nil || e.accountIn(a, grids) {
			v.ReportedOut = append(v.ReportedOut, a)
		}
	}
	for _, i := range r.members {
		m := &e.meters[i]
		if m.outage != r.idx || (grids != nil && (!m.known || !slices.Contains(grids, e.gridOf(m)))) {
			continue
		}
		switch e.meterVerdict(r, i) {
		case "restored":
			v.Restored = append(v.Restored, m.id)
		case "dark":
			d := DarkMeter{Meter: m.id, Account: m.account}
			if last := max(m.seen, m.since); last > 0 { // a last gasp is the last sign of power
				t := time.Unix(0, last).UTC()
				d.LastSeen = &t
			}
			v.Dark = append(v.Dark, d)
		default:
			v.Unknown = append(v.Unknown, m.id)
		}
	}
	return v, true
}

// accountIn reports whether account a is a customer of grids.
func (e *Engine) accountIn(a string, grids []string) bool {
	acct, ok := e.dir.Account(a)
	return ok && slices.Contains(grids, acct.Grid)
}
