package rules

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/store"
)

// testDir is a tiny in-memory Directory read from a contacts CSV, used until
// (and beside) the real registry.
type testDir struct {
	meters   map[string]contacts.MeterInfo
	areas    map[string][]string
	concs    map[string][]string
	feeders  map[string][]string
	accounts map[string]*contacts.Account
	grids    map[string]*contacts.GridInfo
	phones   map[string][]string
}

func newTestDir() *testDir {
	return &testDir{meters: map[string]contacts.MeterInfo{}, areas: map[string][]string{}, concs: map[string][]string{},
		feeders: map[string][]string{}, accounts: map[string]*contacts.Account{}, grids: map[string]*contacts.GridInfo{},
		phones: map[string][]string{}}
}

func readTestDir(t testing.TB, path string) *testDir {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	d := newTestDir()
	for _, r := range recs[1:] {
		get := func(c string) string {
			if i, ok := col[c]; ok {
				return r[i]
			}
			return ""
		}
		d.add(contacts.MeterInfo{Meter: get("meter"), Account: get("account"), Area: get("area"),
			Concentrator: get("concentrator"), Feeder: get("feeder"), Grid: get("grid"),
			Class: contacts.Class(get("class")), Prepaid: get("prepaid") == "true"},
			get("name"), get("phone"), get("manager"), get("manager_phone"))
	}
	return d
}

func (d *testDir) add(mi contacts.MeterInfo, name, phone, manager, managerPhone string) {
	d.meters[mi.Meter] = mi
	d.areas[mi.Area] = append(d.areas[mi.Area], mi.Meter)
	if mi.Concentrator != "" {
		d.concs[mi.Concentrator] = append(d.concs[mi.Concentrator], mi.Meter)
	}
	if mi.Feeder != "" && !slices.Contains(d.feeders[mi.Feeder], mi.Area) {
		d.feeders[mi.Feeder] = append(d.feeders[mi.Feeder], mi.Area)
	}
	a := d.accounts[mi.Account]
	if a == nil {
		a = &contacts.Account{Account: mi.Account, Name: name, Area: mi.Area, Grid: mi.Grid, Class: mi.Class, Prepaid: mi.Prepaid}
		if strings.HasPrefix(phone, "+86") {
			a.Contacts = []contacts.Contact{{Phone: phone, Verdict: contacts.Valid}}
			d.phones[phone] = append(d.phones[phone], mi.Account)
		}
		d.accounts[mi.Account] = a
	}
	a.Meters = append(a.Meters, mi.Meter)
	g := d.grids[mi.Grid]
	if g == nil {
		g = &contacts.GridInfo{Grid: mi.Grid, Manager: manager, ManagerPhone: managerPhone}
		d.grids[mi.Grid] = g
	}
	if !slices.Contains(g.Areas, mi.Area) {
		g.Areas = append(g.Areas, mi.Area)
	}
}

func (d *testDir) Meter(id string) (contacts.MeterInfo, bool) { m, ok := d.meters[id]; return m, ok }
func (d *testDir) AreaMeters(a string) []string               { return d.areas[a] }
func (d *testDir) ConcentratorMeters(c string) []string       { return d.concs[c] }
func (d *testDir) FeederAreas(f string) []string              { return d.feeders[f] }
func (d *testDir) Account(id string) (contacts.Account, bool) {
	a, ok := d.accounts[id]
	if !ok {
		return contacts.Account{}, false
	}
	return *a, true
}
func (d *testDir) Grid(g string) (contacts.GridInfo, bool) {
	gi, ok := d.grids[g]
	if !ok {
		return contacts.GridInfo{}, false
	}
	return *gi, true
}
func (d *testDir) AccountsByPhone(p string) []string { return d.phones[p] }

// openDirectory imports a contacts CSV into the real registry on db.
func openDirectory(t testing.TB, db *store.DB, csvPath string) Directory {
	t.Helper()
	ctx := context.Background()
	reg, err := contacts.Open(ctx, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rejects bytes.Buffer
	sum, err := reg.Import(ctx, f, &rejects)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rejected > 0 {
		t.Fatalf("contacts import rejected %d rows:\n%s", sum.Rejected, rejects.String())
	}
	return reg
}
