package rules

import (
	"time"

	"github.com/gridbell/gridbell/internal/logging"
)

// Counts are an outage's counts (docs/interfaces.md §6). Notified and Delivered are
// filled by the HTTP layer from notify; the rules leave them 0.
type Counts struct {
	Affected  int `json:"affected"`  // customers (accounts) in scope, plus meters not in the registry
	Notified  int `json:"notified"`  // customers told (from notify)
	Delivered int `json:"delivered"` // customers with a delivery receipt (from notify)
	Restored  int `json:"restored"`  // customers whose every meter is seen powered again
	Dark      int `json:"dark"`      // customers with a meter still dark, or with no news since the outage began
}

// Outage is one outage record as the API shows it (docs/interfaces.md §6).
type Outage struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	Source     string     `json:"source"` // ami, oms or both
	Status     string     `json:"status"` // scheduled, active, restored, cancelled
	Areas      []string   `json:"areas"`
	Feeders    []string   `json:"feeders"`
	Start      *time.Time `json:"start"`
	ETR        *time.Time `json:"etr"`
	RestoredAt *time.Time `json:"restored_at"`
	Counts     Counts     `json:"counts"`
	Aliases    []string   `json:"aliases,omitempty"` // ids of AMI records merged into this one
	Cause      string     `json:"cause,omitempty"`
	// CausePhrases is Cause in plain words per language (zh, en), filled
	// by the HTTP layer.
	CausePhrases map[string]string `json:"cause_phrases,omitempty"`
	// AreaNames names the areas the contacts file names (its area_name
	// column), by code; filled by the HTTP layer.
	AreaNames   map[string]string `json:"area_names,omitempty"`
	ConfirmedBy string            `json:"confirmed_by,omitempty"`
	ConfirmedAt *time.Time        `json:"confirmed_at,omitempty"`
	// ConfirmReason is why a dispatcher confirmed with meters still dark.
	ConfirmReason string `json:"confirm_reason,omitempty"`
	// NeedsAttention: confirmed while customers are still dark, and some
	// still are. It clears by itself as their meters come back.
	NeedsAttention bool `json:"needs_attention"`
}

// DarkMeter is a meter still dark, for dispatchers: a nested outage once
// its area is restored.
type DarkMeter struct {
	Meter    string     `json:"meter"`
	Account  string     `json:"account"`
	LastSeen *time.Time `json:"last_seen"`
}

// Verification answers GET /api/v1/outages/{id}/verification.
type Verification struct {
	OutageID    string      `json:"outage_id"`
	Restored    []string    `json:"restored"`     // meters seen powered again
	Dark        []DarkMeter `json:"dark"`         // meters still dark, or with no news since the outage began
	Unknown     []string    `json:"unknown"`      // meters not in the registry, and tripped meters
	ReportedOut []string    `json:"reported_out"` // accounts whose customers replied they are still out
}

// AffectedCustomer is one line of an outage's customer list.
type AffectedCustomer struct {
	Account string   `json:"account"`
	Name    string   `json:"name"`
	Meter   string   `json:"meter"`
	Area    string   `json:"area"`
	Grid    string   `json:"grid"`
	Class   string   `json:"class"`
	Phones  []string `json:"phones"` // masked
	Status  string   `json:"status"` // the rules' view; the HTTP layer overwrites it from notify
	Powered bool     `json:"powered"`
}

// Outages lists the outage records with status status ("" = all), newest
// first.
func (e *Engine) Outages(status string) []Outage {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := []Outage{}
	for i := len(e.outages) - 1; i >= 0; i-- {
		r := e.outages[i]
		if r.Status == statusMerged || r.Status == "" || (status != "" && r.Status != status) {
			continue
		}
		out = append(out, e.view(r, nil))
	}
	return out
}

// Outage returns the outage record id (an AMI id merged into an OMS record
// finds that record).
func (e *Engine) Outage(id string) (Outage, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	o, ok := e.outageIdx[id]
	if !ok {
		return Outage{}, false
	}
	return e.view(e.outages[o], nil), true
}

// view renders r as seen from grids (nil: the whole record; see
// scope.go). Lock: e.mu held (read).
func (e *Engine) view(r *outage, grids []string) Outage {
	v := Outage{ID: r.ID, Kind: r.Kind, Source: r.Source, Status: r.Status, Start: r.Start, ETR: r.ETR,
		Aliases: r.Aliases, Cause: r.Cause, ConfirmedBy: r.ConfirmedBy, ConfirmedAt: r.ConfirmedAt, ConfirmReason: r.ConfirmReason,
		Feeders: append([]string{}, r.Feeders...)}
	if r.Status == statusRestored {
		v.RestoredAt = r.RestoredAt
	}
	c := r.Closed
	if c == nil || r.live() {
		fresh := e.count(r, grids != nil)
		c = &fresh
	}
	v.Counts, v.Areas = c.in(grids)
	v.NeedsAttention = r.ConfirmedBy != "" && v.Counts.Dark > 0
	return v
}

// freeze keeps a closed record's view, so that its counts survive its
// meters joining a newer outage (in this run or after a restart), and
// forgets it when the record opens again. Lock: e.mu held.
func (e *Engine) freeze(r *outage) {
	switch {
	case r.live():
		r.Closed = nil
	case r.Closed == nil && r.Status != statusMerged:
		c := e.count(r, true)
		r.Closed = &c
	}
}

// count works out r's counts and areas from the meters it holds now, and
// with byGrid also each grid's (scope.go). Lock: e.mu held (read).
func (e *Engine) count(r *outage, byGrid bool) closedView {
	// Counts are per customer, like notify's: an account is restored once
	// all its meters in the outage are, and dark while any one is. A meter
	// not in the registry counts as a customer of its own.
	v := closedView{Areas: []string{}}
	all := newTally()
	grids := map[string]*tally{}
	for _, i := range r.members {
		m := &e.meters[i]
		if m.outage != r.idx {
			continue
		}
		key := m.id
		if m.known {
			key = m.account
		}
		vd := e.meterVerdict(r, i)
		all.add(e, m, key, vd)
		if byGrid && m.known {
			g := grids[e.gridOf(m)]
			if g == nil {
				g = newTally()
				grids[e.gridOf(m)] = g
			}
			g.add(e, m, key, vd)
		}
	}
	v.Counts, v.Areas = all.counts(), all.areaNames
	for _, a := range r.Areas {
		if ai, ok := e.areaIdx[a]; !ok || !all.areas[ai] {
			v.Areas = append(v.Areas, a)
		}
	}
	if byGrid {
		v.Grids = make(map[string]gridView, len(grids))
		for g, t := range grids {
			v.Grids[g] = gridView{Counts: t.counts(), Areas: t.areaNames}
		}
	}
	return v
}

// tally gathers one scope's customers' verdicts and areas.
type tally struct {
	verdicts  map[string]string
	areas     map[int32]bool // in areaNames
	areaNames []string
}

func newTally() *tally {
	return &tally{verdicts: map[string]string{}, areas: map[int32]bool{}, areaNames: []string{}}
}

// add counts meter m of customer key with verdict vd. Lock: e.mu held (read).
func (t *tally) add(e *Engine, m *meterState, key, vd string) {
	if m.area >= 0 && !t.areas[m.area] {
		t.areas[m.area] = true
		t.areaNames = append(t.areaNames, e.areas[m.area].name)
	}
	t.verdicts[key] = worse(t.verdicts[key], vd)
}

func (t *tally) counts() Counts {
	c := Counts{Affected: len(t.verdicts)}
	for _, vd := range t.verdicts {
		switch vd {
		case "restored":
			c.Restored++
		case "dark":
			c.Dark++
		}
	}
	return c
}

// verdictRank orders meter verdicts for worse ("" is no verdict yet).
var verdictRank = map[string]int{"": 0, "restored": 1, "unknown": 2, "dark": 3}

// worse combines the verdicts of one customer's meters: dark beats unknown
// beats restored.
func worse(a, b string) string {
	if verdictRank[b] > verdictRank[a] {
		return b
	}
	return a
}

// meterVerdict says whether meter i of r is restored (seen powered again),
// dark (by its own report, or no news since the outage began) or unknown
// (not in the registry, or tripped: its relay says nothing of the outage).
// Lock: e.mu held (read).
func (e *Engine) meterVerdict(r *outage, i int32) string {
	m := &e.meters[i]
	switch {
	case !m.known || m.tripped():
		return "unknown"
	case e.meterIsBack(r, i):
		return "restored"
	}
	return "dark"
}

// Verification answers which meters of outage id are powered again, still
// dark (with their last-seen time) and unknown.
func (e *Engine) Verification(id string) (Verification, bool) {
	return e.VerificationIn(id, nil)
}

// Customers lists every customer affected by outage id, in grid grid ("" =
// all), those with no valid phone too.
func (e *Engine) Customers(id, grid string) ([]AffectedCustomer, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	o, ok := e.outageIdx[id]
	if !ok {
		return nil, false
	}
	r := e.outages[o]
	out := []AffectedCustomer{}
	for _, i := range r.members {
		m := &e.meters[i]
		if m.outage != r.idx || !m.known || (grid != "" && e.gridOf(m) != grid) {
			continue
		}
		c := AffectedCustomer{Account: m.account, Meter: m.id, Grid: e.gridOf(m), Class: e.classOf(m), Phones: []string{},
			Powered: m.st == stPowered, Status: e.customerStatus(r, m)}
		if m.area >= 0 {
			c.Area = e.areas[m.area].name
		}
		if a, ok := e.dir.Account(m.account); ok {
			c.Name = a.Name
			for _, ct := range a.Contacts {
				if ct.Phone != "" {
					c.Phones = append(c.Phones, logging.Phone(ct.Phone))
				}
			}
			if len(c.Phones) == 0 && c.Status == "notified" {
				c.Status = "no_phone"
			}
		}
		out = append(out, c)
	}
	return out, true
}

// customerStatus is what the rules decided for the customer of m in r.
func (e *Engine) customerStatus(r *outage, m *meterState) string {
	fl := r.ledger[m.account]
	switch {
	case fl&lRestored != 0:
		return "restored"
	case fl&(lNotified|lPlanned) != 0:
		return "notified"
	case m.tripped():
		return "tripped"
	case e.disconnected(m.account):
		return "disconnected"
	case m.st == stPowered && r.Start != nil && m.seen >= r.start():
		return "powered"
	}
	return "pending"
}
