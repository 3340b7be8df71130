package contacts

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

const firstFile = `account,name,meter,concentrator,area,feeder,grid,manager,manager_phone,class,prepaid,phone,phone2,language,opt_out
0100000001,张三,330000000001,C-0001,TA-0001,F-01,G01,王经理,13900000001,居民,否,138 1234 5678,,zh,否
0100000001,张三,330000000002,C-0001,TA-0001,F-01,G01,王经理,13900000001,居民,否,13812345678,,zh,否
0100000002,Acme Hospital,330000000003,C-0002,TA-0002,F-01,G01,王经理,13900000001,high_risk,true,+86 139 8765 4321,0755-88881234,en,false
0100000003,李四,330000000004,C-0002,TA-0002,F-01,G02,赵经理,13700000002,商业,是,无,,zh,否
0100000004,王五,330000000005,C-0003,TA-0003,F-02,G02,赵经理,13700000002,居民,否,13812345678,,zh,是
`

// newRegistry opens an empty registry on a fresh store.
func newRegistry(t *testing.T, driver string) (*Registry, *store.DB) {
	t.Helper()
	db := storetest.Open(t, driver)
	r, err := Open(context.Background(), db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return r, db
}

func mustImport(t *testing.T, r *Registry, file string) (Summary, string) {
	t.Helper()
	var rej bytes.Buffer
	sum, err := r.Import(context.Background(), strings.NewReader(file), &rej)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	return sum, rej.String()
}

func TestRegistry(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			t.Run("lookups", func(t *testing.T) { testLookups(t, driver) })
			t.Run("reimport", func(t *testing.T) { testReimport(t, driver) })
			t.Run("atomic", func(t *testing.T) { testAtomic(t, driver) })
			t.Run("phone state", func(t *testing.T) { testPhoneState(t, driver) })
			t.Run("refresh", func(t *testing.T) { testRefresh(t, driver) })
		})
	}
}

func testLookups(t *testing.T, driver string) {
	r, db := newRegistry(t, driver)
	sum, _ := mustImport(t, r, firstFile)
	if sum.Rows != 5 || sum.Imported != 5 || sum.Added != 5 || sum.Rejected != 0 || sum.Accounts != 4 {
		t.Fatalf("summary = %+v", sum)
	}
	checkLookups(t, r)
	again, err := Open(context.Background(), db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	checkLookups(t, again)
}

func checkLookups(t *testing.T, r *Registry) {
	t.Helper()
	if r.Len() != 5 {
		t.Errorf("Len() = %d, want 5", r.Len())
	}
	m, ok := r.Meter("330000000003")
	want := MeterInfo{Meter: "330000000003", Account: "0100000002", Area: "TA-0002", Concentrator: "C-0002",
		Feeder: "F-01", Grid: "G01", Class: HighRisk, Prepaid: true}
	if !ok || m != want {
		t.Errorf("Meter = %+v, %v; want %+v", m, ok, want)
	}
	if area, ok := r.MeterArea("330000000005"); !ok || area != "TA-0003" {
		t.Errorf("MeterArea = %q, %v", area, ok)
	}
	if _, ok := r.Meter("999"); ok {
		t.Error("unknown meter found")
	}
	eq(t, "AreaMeters", r.AreaMeters("TA-0001"), []string{"330000000001", "330000000002"})
	eq(t, "ConcentratorMeters", r.ConcentratorMeters("C-0002"), []string{"330000000003", "330000000004"})
	eq(t, "FeederAreas", r.FeederAreas("F-01"), []string{"TA-0001", "TA-0002"})
	eq(t, "Grids", r.Grids(), []string{"G01", "G02"})
	eq(t, "AccountsByPhone", sorted(r.AccountsByPhone("+8613812345678")), []string{"0100000001", "0100000004"})
	g, ok := r.Grid("G02")
	if !ok || g.Manager != "赵经理" || g.ManagerPhone != "+8613700000002" || !slices.Equal(g.Areas, []string{"TA-0002", "TA-0003"}) {
		t.Errorf("Grid(G02) = %+v, %v", g, ok)
	}
	a, ok := r.Account("0100000002")
	if !ok || a.Name != "Acme Hospital" || a.Language != "en" || a.Class != HighRisk || !a.Prepaid || len(a.Contacts) != 2 {
		t.Fatalf("Account = %+v, %v", a, ok)
	}
	if c := a.Contacts[1]; c.Phone != "+8675588881234" || c.Verdict != Landline || c.Language != "en" {
		t.Errorf("second contact = %+v", c)
	}
	a, _ = r.Account("0100000001")
	eq(t, "Meters", a.Meters, []string{"330000000001", "330000000002"})
	if len(a.Contacts) != 1 || a.Contacts[0].Verdict != Fixed {
		t.Errorf("contacts of 0100000001 = %+v, want one fixed number", a.Contacts)
	}
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func testReimport(t *testing.T, driver string) {
	r, db := newRegistry(t, driver)
	mustImport(t, r, firstFile)
	// 0100000004 leaves; 0100000001 loses a meter; 0100000005 arrives.
	second := strings.Join(strings.Split(firstFile, "\n")[:5], "\n") + "\n" +
		"0100000005,新户,330000000006,C-0003,TA-0003,F-02,G02,赵经理,,居民,否,13512345678,,zh,否\n"
	second = strings.Replace(second, "0100000001,张三,330000000002,C-0001", "0100000009,张三,330000000002,C-0001", 1)
	sum, _ := mustImport(t, r, second)
	// Of the four meters kept, only 330000000002 changed (its account).
	if sum.Added != 1 || sum.Updated != 1 || sum.Unchanged != 3 || sum.Retired != 1 {
		t.Fatalf("summary = %+v, want 1 added, 1 updated, 3 unchanged, 1 retired", sum)
	}
	// The same file again, in this process and in one that loaded the
	// registry from the store: nothing changed.
	for _, reg := range []*Registry{r, reopen(t, db)} {
		if sum, _ := mustImport(t, reg, second); sum.Added != 0 || sum.Updated != 0 || sum.Unchanged != 5 || sum.Retired != 0 {
			t.Errorf("re-import of an unchanged file: summary = %+v, want 5 unchanged, nothing else", sum)
		}
	}
	for _, reg := range []*Registry{r, reopen(t, db)} {
		a, ok := reg.Account("0100000004")
		if !ok || !a.Retired {
			t.Errorf("retired account = %+v, %v", a, ok)
		}
		if _, ok := reg.Meter("330000000005"); ok {
			t.Error("retired meter still answers Meter")
		}
		eq(t, "AreaMeters(TA-0003)", reg.AreaMeters("TA-0003"), []string{"330000000006"})
		eq(t, "AccountsByPhone", sorted(reg.AccountsByPhone("+8613812345678")), []string{"0100000001", "0100000009"})
		if reg.Len() != 5 {
			t.Errorf("Len() = %d, want 5", reg.Len())
		}
		a, _ = reg.Account("0100000001")
		eq(t, "Meters", a.Meters, []string{"330000000001"})
	}
}

func reopen(t *testing.T, db *store.DB) *Registry {
	t.Helper()
	r, err := Open(context.Background(), db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// failingReader gives its data, then an error instead of EOF.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("disk on fire")
	}
	return n, err
}

func testAtomic(t *testing.T, driver string) {
	r, db := newRegistry(t, driver)
	mustImport(t, r, firstFile)
	before := r.Quality("")
	bad := strings.Replace(firstFile, "G02", "G09", -1) + "0100000008,x,330000000008,C-1,TA-9,F-9,G09,,,居民,否,13512345678,,zh,否\n"
	if _, err := r.Import(context.Background(), io.MultiReader(strings.NewReader(bad), &failingReader{strings.NewReader("")}), nil); err == nil {
		t.Fatal("import of a failing reader succeeded")
	}
	var rej bytes.Buffer
	sum, err := r.Import(context.Background(), strings.NewReader("account,meter,area,grid\n,,,\n"), &rej)
	if !errors.Is(err, ErrNoRows) {
		t.Fatalf("import of no good rows: %v, want ErrNoRows", err)
	}
	if sum.Rows != 1 || sum.Rejected != 1 || strings.Count(rej.String(), "\n") != 2 {
		t.Errorf("import of no good rows: summary %+v, rejects %q; want the refused row counted and listed", sum, rej.String())
	}
	if _, err := r.Import(context.Background(), strings.NewReader("account,meter\n1,2\n"), nil); !errors.Is(err, ErrMissingColumns) {
		t.Fatalf("import without required columns: %v, want ErrMissingColumns", err)
	}
	for _, reg := range []*Registry{r, reopen(t, db)} {
		if got := reg.Quality(""); !reflect.DeepEqual(got, before) {
			t.Errorf("after failed imports Quality = %+v, want %+v", got, before)
		}
		if _, ok := reg.Meter("330000000008"); ok {
			t.Error("meter of a failed import is in the registry")
		}
	}
}

func testPhoneState(t *testing.T, driver string) {
	ctx := context.Background()
	r, db := newRegistry(t, driver)
	mustImport(t, r, firstFile)
	if err := r.SetVerdict(ctx, "+8613987654321", Invalid, "twilio 21211"); err != nil {
		t.Fatal(err)
	}
	if err := r.SetOptOut(ctx, "+8613812345678", true); err != nil {
		t.Fatal(err)
	}
	if err := r.SetOptOut(ctx, "+8613500000000", true); err != nil { // unknown: stored all the same
		t.Fatal(err)
	}
	for _, reg := range []*Registry{r, reopen(t, db)} {
		a, _ := reg.Account("0100000002")
		if c := a.Contacts[0]; c.Verdict != Invalid || c.Reason != "twilio 21211" {
			t.Errorf("contact after SetVerdict = %+v", c)
		}
		a, _ = reg.Account("0100000001")
		if !a.Contacts[0].OptOut {
			t.Errorf("contact after SetOptOut = %+v", a.Contacts[0])
		}
		g1 := reg.Quality("G01")
		if len(g1.Grids) != 1 || g1.Grids[0].LandlineOnly != 1 || g1.Grids[0].OptedOut != 1 || g1.Grids[0].Valid != 0 {
			t.Errorf("Quality(G01) = %+v", g1)
		}
	}
	if err := r.SetOptOut(ctx, "+8613812345678", false); err != nil {
		t.Fatal(err)
	}
	if a, _ := reopen(t, db).Account("0100000004"); a.Contacts[0].OptOut {
		t.Error("START did not override the file's opt-out")
	}
}

func TestRejects(t *testing.T) {
	file := `户号,表号,台区,网格,客户类别,手机
1,m1,A,G1,居民,13812345678
,m2,A,G1,居民,13812345678
3,m3,A,G1,大客户,13812345678
4,m1,A,G1,居民,13812345678
5,m5,A,G1,居民,"13812345678
6,m6,A,G1,居民,无
`
	r, _ := newRegistry(t, "sqlite")
	sum, rej := mustImport(t, r, file)
	recs, err := csv.NewReader(strings.NewReader(rej)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"\ufeffline", "column", "reason", "raw"}, // the BOM, for spreadsheets
		{"3", "account", "rejected: missing account", ""},
		{"4", "class", "rejected: bad class", "大客户"},
		{"5", "meter", "rejected: duplicate meter", "m1"},
	}
	if !reflect.DeepEqual(recs[:4], want) {
		t.Errorf("rejects = %q, want first %q", recs, want)
	}
	if sum.Rejected != 3 || sum.Imported != 2 {
		t.Errorf("summary = %+v", sum)
	}
}

// TestConcurrentLookups reads while imports and phone states change the
// registry (run with -race).
func TestConcurrentLookups(t *testing.T) {
	ctx := context.Background()
	r, _ := newRegistry(t, "sqlite")
	mustImport(t, r, firstFile)
	done := make(chan struct{})
	errs := make(chan error, 2)
	go func() {
		defer close(done)
		for i := range 5 {
			if _, err := r.Import(ctx, strings.NewReader(firstFile), nil); err != nil {
				errs <- err
				return
			}
			if err := r.SetOptOut(ctx, "+8613812345678", i%2 == 0); err != nil {
				errs <- err
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			return
		default:
		}
		if _, ok := r.Meter("330000000001"); !ok {
			t.Fatal("meter vanished during an import")
		}
		r.AreaMeters("TA-0001")
		r.Account("0100000001")
		r.Quality("")
	}
}

func TestImportFile(t *testing.T) {
	dir := t.TempDir()
	path, rejects := dir+"/contacts.csv", dir+"/rejects.csv"
	if err := os.WriteFile(path, []byte(firstFile), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := newRegistry(t, "sqlite")
	sum, err := r.ImportFile(context.Background(), path, rejects)
	if err != nil || sum.Imported != 5 {
		t.Fatalf("ImportFile = %+v, %v", sum, err)
	}
	got, err := os.ReadFile(rejects)
	if err != nil {
		t.Fatal(err)
	}
	// 0100000003 has only 无: one contact line, counted as invalid.
	want := "\ufeffline,column,reason,raw\n5,phone,invalid: placeholder,无\n"
	if string(got) != want {
		t.Errorf("reject file = %q, want %q", got, want)
	}
	if _, err := r.ImportFile(context.Background(), dir+"/missing.csv", ""); err == nil {
		t.Error("import of a missing file succeeded")
	}
}

// testRefresh: the running service's registry sees an import made by
// another process (a second Open on the same store) only through Refresh.
func testRefresh(t *testing.T, driver string) {
	ctx := context.Background()
	running, db := newRegistry(t, driver)
	mustImport(t, running, firstFile)
	g0 := running.Generation()
	if changed, err := running.Refresh(ctx); err != nil || changed {
		t.Fatalf("Refresh() with nothing new = %v, %v; want false, nil", changed, err)
	}
	if running.Generation() != g0 {
		t.Errorf("Generation() moved without a swap: %d, want %d", running.Generation(), g0)
	}
	if err := running.SetOptOut(ctx, "+8613512345678", true); err != nil {
		t.Fatal(err)
	}

	other := reopen(t, db) // gridbell contacts import, another process
	// 330000000003 moves to TA-0003 and grid G02; 330000000004 is retired;
	// 330000000006 arrives.
	lines := strings.Split(firstFile, "\n")
	lines[3] = strings.Replace(lines[3], "C-0002,TA-0002,F-01,G01", "C-0003,TA-0003,F-02,G02", 1)
	second := strings.Join(append(lines[:4:4], lines[5]), "\n") + "\n" +
		"0100000005,新户,330000000006,C-0003,TA-0003,F-02,G02,赵经理,,居民,否,13512345678,,zh,否\n"
	if sum, _ := mustImport(t, other, second); sum.Added != 1 || sum.Retired != 1 {
		t.Fatalf("summary = %+v", sum)
	}
	if m, _ := running.Meter("330000000003"); m.Area != "TA-0002" {
		t.Fatalf("before Refresh the running registry already sees the import: %+v", m)
	}

	changed, err := running.Refresh(ctx)
	if err != nil || !changed {
		t.Fatalf("Refresh() after another import = %v, %v; want true, nil", changed, err)
	}
	if running.Generation() <= g0 {
		t.Errorf("Generation() = %d after a refresh, want > %d", running.Generation(), g0)
	}
	if m, ok := running.Meter("330000000003"); !ok || m.Area != "TA-0003" || m.Grid != "G02" {
		t.Errorf("moved meter = %+v, %v; want TA-0003 in G02", m, ok)
	}
	if _, ok := running.Meter("330000000004"); ok {
		t.Error("retired meter still answers Meter after Refresh")
	}
	eq(t, "AreaMeters(TA-0003)", sorted(running.AreaMeters("TA-0003")), []string{"330000000003", "330000000005", "330000000006"})
	a, _ := running.Account("0100000005")
	if len(a.Contacts) != 1 || !a.Contacts[0].OptOut {
		t.Errorf("new account's contacts = %+v, want the STOP stored before the import kept", a.Contacts)
	}
	if changed, err := running.Refresh(ctx); err != nil || changed {
		t.Errorf("second Refresh() = %v, %v; want false, nil", changed, err)
	}

	g1 := running.Generation()
	mustImport(t, running, firstFile) // in-process: no refresh needed after it
	if running.Generation() <= g1 {
		t.Errorf("Generation() = %d after an in-process import, want > %d", running.Generation(), g1)
	}
	if changed, err := running.Refresh(ctx); err != nil || changed {
		t.Errorf("Refresh() after an in-process import = %v, %v; want false, nil", changed, err)
	}
	if changed, err := other.Refresh(ctx); err != nil || !changed {
		t.Errorf("the other registry's Refresh() = %v, %v; want true, nil", changed, err)
	}
}
