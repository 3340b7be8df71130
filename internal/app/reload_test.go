package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// reimportCSV is contactsCSV as the CIS exports it a day later: City
// Hospital's meter 330000000003 moved to TA-2 (grid G02), 330000000008 was
// removed, 330000000009 is new in TA-2, and Sun's phone changed.
var reimportCSV = func() string {
	s := strings.Replace(contactsCSV, "330000000003,C-1,TA-1,F-1,G01,Wang,13900000001", "330000000003,C-2,TA-2,F-1,G02,Sun,13900000002", 1)
	s = strings.Replace(s, "0100000008,Wu,330000000008,C-2,TA-2,F-1,G02,Sun,13900000002,commercial,false,13812345608,zh\n", "", 1)
	s = strings.Replace(s, "13812345606", "13812345616", 1)
	return s + "0100000009,Zheng,330000000009,C-2,TA-2,F-1,G02,Sun,13900000002,resident,false,13812345609,zh\n"
}()

// TestContactsReload runs the service on each store, imports a changed
// contacts file from another process sharing the store (a second
// contacts.Open, as gridbell contacts import does), waits for the reload
// loop, and checks that the next outage follows the new registry. Then the
// original file goes back in over POST /api/v1/contacts/import.
func TestContactsReload(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) { testContactsReload(t, driver) })
	}
}

// service is one running gridbell for a test.
type service struct {
	t      *testing.T
	app    *app.App
	cfg    *config.Config
	listen string
}

func startService(t *testing.T, driver string) *service {
	t.Helper()
	dir := t.TempDir()
	contactsFile := filepath.Join(dir, "contacts.csv")
	if err := os.WriteFile(contactsFile, []byte(contactsCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	sc := storetest.Config(t, driver)
	listen := freePort(t)
	cfg, err := config.Load("", []string{
		"GRIDBELL_DATA_DIR=" + filepath.Join(dir, "data"),
		"GRIDBELL_CONTACTS_FILE=" + contactsFile,
		"GRIDBELL_CONTACTS_REFRESH=100ms",
		"GRIDBELL_STORE_DRIVER=" + sc.Driver,
		"GRIDBELL_STORE_DSN=" + sc.DSN,
		"GRIDBELL_HTTP_LISTEN=" + listen,
		"GRIDBELL_MQTT_EMBEDDED_LISTEN=" + freePort(t),
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
		"GRIDBELL_AUTH_TOKENS=admintok-0123456789:admin,mgr2-token-0123456789:manager:G02",
	})
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg, zerolog.InfoLevel)
	return &service{t: t, app: a, cfg: cfg, listen: listen}
}

// do sends a request and decodes a JSON answer into v (when not nil).
func (s *service) do(method, path, token, body string, v any) int {
	s.t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.listen+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			s.t.Fatalf("%s %s: cannot decode answer: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// oms posts one OMS message for TA-2 over HTTP.
func (s *service) oms(id, status string, at time.Duration) {
	s.t.Helper()
	now := time.Now().Truncate(time.Second)
	body := fmt.Sprintf(`{"outage_id":%q,"kind":"fault","status":%q,"areas":["TA-2"],"start":%q,"updated_at":%q}`,
		id, status, now.Format(time.RFC3339), now.Add(at).Format(time.RFC3339))
	if code := s.do("POST", "/api/v1/oms/events", "admintok-0123456789", body, nil); code/100 != 2 {
		s.t.Fatalf("POST OMS %s %s = %d", id, status, code)
	}
}

// customers returns the sorted accounts of an outage's customer list.
func (s *service) customers(id string) []string {
	s.t.Helper()
	var list struct {
		Customers []struct{ Account string } `json:"customers"`
	}
	if code := s.do("GET", "/api/v1/outages/"+id+"/customers", "admintok-0123456789", "", &list); code != 200 {
		s.t.Fatalf("GET customers of %s = %d", id, code)
	}
	var out []string
	for _, c := range list.Customers {
		out = append(out, c.Account)
	}
	slices.Sort(out)
	return out
}

// outageSMS waits until the outbox holds want outage SMS for ref and
// returns them by phone.
func (s *service) outageSMS(ref string, want int) map[string]int {
	s.t.Helper()
	outbox := filepath.Join(s.cfg.DataDir, "outbox.jsonl")
	waitFor(s.t, "outage SMS for "+ref, 30*time.Second, func() bool {
		return len(count(readOutbox(s.t, outbox), "outage", ref)) >= want
	})
	time.Sleep(300 * time.Millisecond) // let anything wrongly queued show up
	return count(readOutbox(s.t, outbox), "outage", ref)
}

// importElsewhere imports file into the store as another process would.
func importElsewhere(t *testing.T, cfg *config.Config, file string) contacts.Summary {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, cfg.Store, cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg, err := contacts.Open(ctx, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := reg.Import(ctx, strings.NewReader(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func testContactsReload(t *testing.T, driver string) {
	s := startService(t, driver)

	// A first outage in TA-2 makes the rules learn the area as it is.
	s.oms("OMS-R1", "started", 0)
	if got := s.outageSMS("OMS-R1", 3); len(got) != 3 || got["+8613812345608"] != 1 {
		t.Fatalf("first outage SMS = %v, want ...606, ...607 and ...608", got)
	}
	s.oms("OMS-R1", "cancelled", time.Second)

	g0 := s.app.Contacts.Generation()
	sum := importElsewhere(t, s.cfg, reimportCSV)
	if sum.Added != 1 || sum.Retired != 1 {
		t.Fatalf("import summary = %+v, want 1 added, 1 retired", sum)
	}
	waitFor(t, "contacts reload", 10*time.Second, func() bool { return s.app.Contacts.Generation() > g0 })

	s.oms("OMS-R2", "started", 2*time.Second)
	got := s.outageSMS("OMS-R2", 4)
	want := map[string]int{"+8613812345603": 1, "+8613812345607": 1, "+8613812345609": 1, "+8613812345616": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outage SMS after the reload = %v, want %v (moved, new and changed customers; not the removed one)", got, want)
	}
	if c := s.customers("OMS-R2"); strings.Join(c, ",") != "0100000003,0100000005,0100000006,0100000007,0100000009" {
		t.Errorf("customers of OMS-R2 = %v", c)
	}
	s.oms("OMS-R2", "cancelled", 3*time.Second)

	// A manager without shell access puts the old file back over HTTP.
	if code := s.do("POST", "/api/v1/contacts/import", "mgr2-token-0123456789", contactsCSV, nil); code != http.StatusForbidden {
		t.Errorf("import by a manager = %d, want 403", code)
	}
	var refused struct {
		Error    string
		Rejected int
		Rejects  [][]string
	}
	if code := s.do("POST", "/api/v1/contacts/import", "admintok-0123456789", "account,meter,area,grid\n,,TA-1,G01\n", &refused); code != http.StatusBadRequest ||
		!strings.Contains(refused.Error, "no valid rows") || refused.Rejected != 1 || len(refused.Rejects) == 0 {
		t.Errorf("import of no valid row = %d %+v, want 400 saying why", code, refused)
	}
	if code := s.do("POST", "/api/v1/contacts/import", "admintok-0123456789", "account,meter\n1,2\n", &refused); code != http.StatusBadRequest ||
		!strings.Contains(refused.Error, "area") {
		t.Errorf("import without required columns = %d %+v, want 400 naming them", code, refused)
	}
	var back contacts.Summary
	if code := s.do("POST", "/api/v1/contacts/import", "admintok-0123456789", contactsCSV, &back); code != 200 || back.Updated != 3 || back.Unchanged != 5 || back.Retired != 1 || back.Rows != 8 {
		t.Errorf("import over HTTP = %d %+v, want 200, 8 rows: 3 updated (the moved meter, the changed phone, the removed meter back), 5 unchanged, 1 retired", code, back)
	}
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, "contacts-rejects.csv")); err != nil {
		t.Errorf("reject file of the HTTP import: %v", err)
	}
	s.oms("OMS-R3", "started", 4*time.Second)
	if c := s.customers("OMS-R3"); strings.Join(c, ",") != "0100000005,0100000006,0100000007,0100000008" {
		t.Errorf("customers of OMS-R3 after the HTTP import = %v, want TA-2 as it first was", c)
	}
}
