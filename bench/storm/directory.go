package main

import (
	"context"
	"slices"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/fleet"
)

// memDir is an in-memory directory over a generated fleet, for runs that
// should not wait for a million-row contacts import. It answers what the
// rules and notify's Enqueue ask; verdict and opt-out changes are ignored.
type memDir struct {
	meters   map[string]contacts.MeterInfo
	areas    map[string][]string
	concs    map[string][]string
	feeders  map[string][]string
	accounts map[string]*contacts.Account
	grids    map[string]*contacts.GridInfo
}

func newMemDir(f *fleet.Fleet) *memDir {
	d := &memDir{meters: make(map[string]contacts.MeterInfo, len(f.Customers)), areas: map[string][]string{},
		concs: map[string][]string{}, feeders: map[string][]string{},
		accounts: make(map[string]*contacts.Account, len(f.Customers)), grids: map[string]*contacts.GridInfo{}}
	for i := range f.Customers {
		c := &f.Customers[i]
		d.meters[c.Meter] = contacts.MeterInfo{Meter: c.Meter, Account: c.Account, Area: c.Area, Concentrator: c.Concentrator,
			Feeder: c.Feeder, Grid: c.Grid, Class: contacts.Class(c.Class), Prepaid: c.Prepaid}
		d.areas[c.Area] = append(d.areas[c.Area], c.Meter)
		d.concs[c.Concentrator] = append(d.concs[c.Concentrator], c.Meter)
		if fa := d.feeders[c.Feeder]; len(fa) == 0 || fa[len(fa)-1] != c.Area {
			d.feeders[c.Feeder] = append(fa, c.Area)
		}
		a := d.accounts[c.Account]
		if a == nil {
			a = &contacts.Account{Account: c.Account, Name: c.Name, Area: c.Area, Grid: c.Grid, Class: contacts.Class(c.Class),
				Prepaid: c.Prepaid, Language: "zh", Contacts: []contacts.Contact{{Phone: "+86" + c.Phone, Verdict: contacts.Valid}}}
			d.accounts[c.Account] = a
		}
		a.Meters = append(a.Meters, c.Meter)
		g := d.grids[c.Grid]
		if g == nil {
			g = &contacts.GridInfo{Grid: c.Grid, Manager: c.Manager, ManagerPhone: "+86" + c.ManagerPhone}
			d.grids[c.Grid] = g
		}
		if !slices.Contains(g.Areas, c.Area) {
			g.Areas = append(g.Areas, c.Area)
		}
	}
	return d
}

func (d *memDir) Len() int                                   { return len(d.meters) }
func (d *memDir) Meter(id string) (contacts.MeterInfo, bool) { m, ok := d.meters[id]; return m, ok }
func (d *memDir) AreaMeters(a string) []string               { return d.areas[a] }
func (d *memDir) ConcentratorMeters(c string) []string       { return d.concs[c] }
func (d *memDir) FeederAreas(f string) []string              { return d.feeders[f] }
func (d *memDir) AccountsByPhone(string) []string            { return nil }
func (d *memDir) Account(id string) (contacts.Account, bool) {
	if a, ok := d.accounts[id]; ok {
		return *a, true
	}
	return contacts.Account{}, false
}
func (d *memDir) Grid(g string) (contacts.GridInfo, bool) {
	if gi, ok := d.grids[g]; ok {
		return *gi, true
	}
	return contacts.GridInfo{}, false
}
func (d *memDir) SetVerdict(context.Context, string, contacts.Verdict, string) error { return nil }
func (d *memDir) SetOptOut(context.Context, string, bool) error                      { return nil }
