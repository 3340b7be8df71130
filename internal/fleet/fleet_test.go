package fleet

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestGenerateDeterministic(t *testing.T) {
	o := Options{Customers: 3000, Areas: 30, Grids: 3, Seed: 42, PrepaidShare: 0.2, Messy: true}
	a, b := Generate(o), Generate(o)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same options gave two fleets")
	}
	o.Seed = 43
	if reflect.DeepEqual(a, Generate(o)) {
		t.Fatal("another seed gave the same fleet")
	}
}

func TestGenerateShape(t *testing.T) {
	f := Generate(Options{Customers: 5000, Areas: 40, Grids: 4, Seed: 1, PrepaidShare: 0.25, Messy: true})
	if len(f.Customers) != 5000 || len(f.Areas) != 40 || len(f.Concentrators) != 40 || len(f.Grids) != 4 {
		t.Fatalf("sizes: %d customers, %d areas, %d concentrators, %d grids", len(f.Customers), len(f.Areas), len(f.Concentrators), len(f.Grids))
	}
	if f.Areas[0] != "TA-0001" || f.Concentrators[39] != "C-0040" || f.Grids[3] != "G04" {
		t.Fatalf("names: %s %s %s", f.Areas[0], f.Concentrators[39], f.Grids[3])
	}
	meters, accounts := map[string]bool{}, map[string]int{}
	var critical, prepaid, optOut, en, blank int
	for _, c := range f.Customers {
		if meters[c.Meter] || len(c.Meter) != 12 || len(c.Account) != 10 {
			t.Fatalf("bad or repeated ids: %+v", c)
		}
		meters[c.Meter] = true
		accounts[c.Account]++
		count(&critical, c.Class == "important" || c.Class == "high_risk" || c.Class == "life_support")
		count(&prepaid, c.Prepaid)
		count(&optOut, c.OptOut)
		count(&en, c.Language == "en")
		count(&blank, c.Phone == "")
	}
	twoMeters := 0
	for _, n := range accounts {
		count(&twoMeters, n > 1)
	}
	for what, n := range map[string]int{"critical": critical, "prepaid": prepaid, "opted out": optOut,
		"english": en, "blank phone": blank, "two-meter accounts": twoMeters} {
		if n == 0 || n > 2000 {
			t.Errorf("%d %s customers of 5000", n, what)
		}
	}
}

func count(n *int, ok bool) {
	if ok {
		*n++
	}
}

func TestWriteCSV(t *testing.T) {
	f := Generate(Options{Customers: 50, Seed: 3, Messy: true})
	var en, zh bytes.Buffer
	if err := f.WriteCSV(&en, false); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteCSV(&zh, true); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(en.String(), "\ufeffaccount,name,meter,") || !strings.HasPrefix(zh.String(), "\ufeff户号,户名,表号,") {
		t.Fatalf("headers: %q / %q", en.String()[:30], zh.String()[:30])
	}
	if !strings.Contains(en.String(), ",幸福里1号台区\n") || !strings.Contains(zh.String(), ",台区名称\n") {
		t.Errorf("no area names: %q", en.String()[:200])
	}
	if strings.Count(en.String(), "\n") != 51 {
		t.Fatalf("%d lines, want 51", strings.Count(en.String(), "\n"))
	}
}
