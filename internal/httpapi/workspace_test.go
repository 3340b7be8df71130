package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// stormWorld: outage OMS-W-1 over both grids, its SMS sent; the one to
// 0100000001 delivered, the one to 0100000006 failed.
func stormWorld(t *testing.T) *world { return stormWorldOn(t, "sqlite") }

func stormWorldOn(t *testing.T, driver string) *world {
	w := newWorld(t, driver, worldCSV)
	w.outage("OMS-W-1", "TA-1", "TA-2")
	// 5 customers can take SMS, and each grid's manager gets a digest.
	sent := w.sent(7)
	for _, m := range sent {
		switch m["to"] {
		case "+8613812345601":
			w.receipt(m["id"], m["to"], "delivered", "")
		case "+8613812345606":
			w.receipt(m["id"], m["to"], "undelivered", "30003")
		}
	}
	return w
}

func TestWorkspaceManager(t *testing.T) {
	w := stormWorld(t)
	var ws httpapi.Workspace
	if code := w.login("wang").do("GET", "/api/v1/outages/OMS-W-1/workspace", "", &ws); code != 200 {
		t.Fatalf("workspace = %d", code)
	}
	var order []string
	for _, c := range ws.Customers {
		if c.Grid != "G01" {
			t.Errorf("manager of G01 sees %s of grid %s", c.Account, c.Grid)
		}
		order = append(order, c.Account)
	}
	if got := strings.Join(order, ","); !strings.HasPrefix(got, "0100000003,0100000002,0100000004,") || len(order) != 6 {
		t.Errorf("customers = %s, want life support, high risk, important first, 6 of G01", got)
	}
	if ws.Classes["high_risk"] != 1 || ws.Classes["life_support"] != 1 || ws.Classes["important"] != 1 {
		t.Errorf("classes = %v", ws.Classes)
	}
	reach := map[string]string{}
	for _, c := range ws.CallList {
		reach[c.Account] = c.Reach
	}
	want := map[string]string{"0100000003": "landline", "0100000004": "invalid", "0100000005": "opted_out", "0100000006": "failed"}
	eventually(t, func() bool { // the failed receipt is applied as it lands
		if len(reach) == len(want) {
			return true
		}
		w.login("wang").do("GET", "/api/v1/outages/OMS-W-1/workspace", "", &ws)
		reach = map[string]string{}
		for _, c := range ws.CallList {
			reach[c.Account] = c.Reach
		}
		return len(reach) == len(want)
	})
	for a, r := range want {
		if reach[a] != r {
			t.Errorf("call list: %s = %q, want %q (list %v)", a, reach[a], r, reach)
		}
	}
	for _, c := range ws.CallList {
		if c.Account == "0100000003" && (len(c.Phones) != 1 || strings.Contains(c.Phones[0], "*")) {
			t.Errorf("pii manager sees the landline as %v, want it in full", c.Phones)
		}
	}
	if c := ws.Outage.Counts; c.Affected != 6 || c.Dark != 6 || c.Restored != 0 {
		t.Errorf("manager's counts = %+v, want 6 affected, 6 dark (G01 only)", c)
	}
	// zhao manages G01 too, without pii: masked numbers, except on the
	// call list, which the grid's manager must be able to dial.
	var masked httpapi.Workspace
	w.login("zhao").do("GET", "/api/v1/outages/OMS-W-1/workspace", "", &masked)
	for _, c := range masked.Customers {
		for _, p := range c.Phones {
			if !strings.Contains(p, "****") {
				t.Errorf("manager without pii sees %s's number %s", c.Account, p)
			}
		}
	}
	dial := map[string]string{}
	for _, c := range masked.CallList {
		dial[c.Account] = strings.Join(c.Phones, " ")
	}
	if !masked.CallListFull || masked.CallListNote != "" || dial["0100000003"] != "+8657188886666" {
		t.Errorf("manager without pii: call list full %v (%q), landline %q; want it in full to dial",
			masked.CallListFull, masked.CallListNote, dial["0100000003"])
	}
	var calls struct{ Entries []httpapi.AuditEntry }
	w.as(tokAdmin).do("GET", "/api/v1/audit?action=call_list&name=zhao", "", &calls)
	if len(calls.Entries) != 1 || calls.Entries[0].Target != "OMS-W-1" || !strings.Contains(calls.Entries[0].Detail, "call list") {
		t.Errorf("zhao's call-list views = %+v, want the one of OMS-W-1", calls.Entries)
	}
	// A role without the right (an admin token without pii) sees the
	// numbers masked and why.
	var admin httpapi.Workspace
	w.as(tokAdmin).do("GET", "/api/v1/outages/OMS-W-1/workspace", "", &admin)
	for _, c := range admin.CallList {
		for _, p := range c.Phones {
			if !strings.Contains(p, "****") {
				t.Errorf("admin without pii sees %s's number %s on the call list", c.Account, p)
			}
		}
	}
	if admin.CallListFull || !strings.Contains(admin.CallListNote, "pii") {
		t.Errorf("admin without pii: call list full %v, note %q; want masked with the reason", admin.CallListFull, admin.CallListNote)
	}
	// A manager with no customer in an outage does not see it.
	w2 := newWorld(t, "sqlite", worldCSV)
	w2.outage("OMS-W-2", "TA-2")
	if code := w2.login("wang").do("GET", "/api/v1/outages/OMS-W-2/workspace", "", nil); code != http.StatusNotFound {
		t.Errorf("G01's manager on a G02 outage = %d, want 404", code)
	}
	if code := w2.as(tokMgr).do("GET", "/api/v1/outages/OMS-W-2/workspace", "", nil); code != http.StatusNotFound {
		t.Errorf("G01's manager token on a G02 outage = %d, want 404", code)
	}
	var sun httpapi.Workspace
	if code := w2.login("sun").do("GET", "/api/v1/outages/OMS-W-2/workspace", "", &sun); code != 200 || len(sun.Customers) != 2 {
		t.Errorf("G02's manager on OMS-W-2 = %d, %d customers; want 200, 2", code, len(sun.Customers))
	}
	// Each pii view is audited.
	var log struct{ Entries []httpapi.AuditEntry }
	w.as(tokAdmin).do("GET", "/api/v1/audit?action=pii_view&name=wang", "", &log)
	if len(log.Entries) == 0 || log.Entries[0].Target != "OMS-W-1" {
		t.Errorf("pii views of wang = %+v, want the workspace of OMS-W-1", log.Entries)
	}
	w.as(tokAdmin).do("GET", "/api/v1/audit?action=pii_view&name=zhao", "", &log)
	if len(log.Entries) != 0 {
		t.Errorf("zhao saw masked numbers only, yet pii views = %+v", log.Entries)
	}
}

func TestDispatcherBoard(t *testing.T) {
	w := stormWorld(t)
	w.powerOn("330000000001")
	w.reply("+8613812345601", "OUT")
	li := w.login("li")
	var ws httpapi.Workspace
	if code := li.do("GET", "/api/v1/outages/OMS-W-1/workspace", "", &ws); code != 200 {
		t.Fatalf("workspace = %d", code)
	}
	if len(ws.Customers) != 8 || len(ws.Dark) != 7 {
		t.Errorf("dispatcher sees %d customers, %d dark; want 8 and 7", len(ws.Customers), len(ws.Dark))
	}
	byAccount := map[string]httpapi.Customer{}
	for _, c := range ws.Customers {
		byAccount[c.Account] = c
	}
	for _, d := range ws.Dark {
		c, ok := byAccount[d.Account]
		if !ok || c.Name == "" || c.Class == "" || d.LastSeen != nil && d.LastSeen.IsZero() {
			t.Errorf("dark meter %+v without its customer in the list", d)
		}
		if d.Account == "0100000002" && (c.Name != "City Hospital" || c.Class != "high_risk" || len(c.Phones) != 1) {
			t.Errorf("dark hospital = %+v", c)
		}
	}
	if len(ws.ReportedOut) != 1 || ws.ReportedOut[0].Account != "0100000001" || ws.ReportedOut[0].Name != "Resident One" {
		t.Errorf("reported out = %+v, want Resident One", ws.ReportedOut)
	}
	if ws.Outage.Counts.Affected != 8 || ws.Outage.Counts.Dark != 7 {
		t.Errorf("dispatcher's counts = %+v", ws.Outage.Counts)
	}
}

func TestHotline(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) { testHotline(t, stormWorldOn(t, driver)) })
	}
}

func testHotline(t *testing.T, w *world) {
	hot := w.login("hot")
	var d struct{ Customers []httpapi.HotlineCustomer }
	if code := hot.do("GET", "/api/v1/hotline?q=0100000001", "", &d); code != 200 || len(d.Customers) != 1 {
		t.Fatalf("lookup by account = %d %+v", code, d)
	}
	c := d.Customers[0]
	if !c.InOutage || c.Outage == nil || c.Outage.ID != "OMS-W-1" || c.Outage.ETR == nil || c.Outage.Start == nil || c.Powered {
		t.Errorf("customer = %+v, want in OMS-W-1 with start and ETR, unpowered", c)
	}
	delivered := func() bool {
		for _, m := range c.Messages {
			if m.Kind == "outage" && m.Delivered && m.Ref == "OMS-W-1" {
				return true
			}
		}
		return false
	}
	// The delivery receipt is applied as it lands: ask again until the
	// outage SMS shows delivered.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the customer's messages at the end: %+v", c.Messages)
		}
	})
	eventually(t, func() bool {
		d.Customers = nil
		if hot.do("GET", "/api/v1/hotline?q=0100000001", "", &d); len(d.Customers) == 1 {
			c = d.Customers[0]
		}
		return delivered()
	})
	for _, m := range c.Messages {
		if !strings.Contains(m.Phone, "****") {
			t.Errorf("hotline without pii sees %s", m.Phone)
		}
	}
	// By phone, as typed by a caller: the failed SMS shows.
	eventually(t, func() bool {
		d.Customers = nil
		hot.do("GET", "/api/v1/hotline?q="+strings.ReplaceAll("138 1234 5606", " ", "%20"), "", &d)
		return len(d.Customers) == 1 && len(d.Customers[0].Messages) > 0 && d.Customers[0].Messages[0].Failed
	})
	if d.Customers[0].Account != "0100000006" {
		t.Errorf("lookup by phone = %+v", d.Customers)
	}
	if code := w.as(tokHotline).do("GET", "/api/v1/hotline?q=0199999999", "", nil); code != http.StatusNotFound {
		t.Errorf("unknown account = %d, want 404", code)
	}
	if code := hot.do("GET", "/api/v1/hotline", "", nil); code != http.StatusBadRequest {
		t.Errorf("empty lookup = %d, want 400", code)
	}
	// A manager looks up only customers of its grids.
	if code := w.login("wang").do("GET", "/api/v1/hotline?q=0100000011", "", nil); code != http.StatusNotFound {
		t.Errorf("G01's manager looking up a G02 customer = %d, want 404", code)
	}
	var log struct{ Entries []httpapi.AuditEntry }
	w.as(tokAdmin).do("GET", "/api/v1/audit?action=lookup", "", &log)
	var byPhone, ivr bool
	for _, e := range log.Entries {
		byPhone = byPhone || e.Name == "hot" && e.Target == "0100000006" && strings.Contains(e.Detail, "+86138****5606")
		ivr = ivr || e.Name == "ivr"
	}
	if !byPhone || !ivr {
		t.Errorf("lookups audited = %+v, want hot's by masked phone and the IVR token's", log.Entries)
	}
}

func TestMessageHistory(t *testing.T) {
	w := stormWorld(t)
	var h struct {
		Messages []httpapi.SentView
	}
	if code := w.login("zhao").do("GET", "/api/v1/accounts/0100000001/messages", "", &h); code != 200 || len(h.Messages) == 0 {
		t.Fatalf("history = %d %+v", code, h)
	}
	if m := h.Messages[0]; m.Kind != "outage" || !m.Delivered || m.SentAt == nil || !strings.Contains(m.Phone, "****") {
		t.Errorf("message = %+v, want a delivered outage SMS, number masked", m)
	}
	w.login("zhao").do("GET", "/api/v1/accounts/0100000003/messages", "", &h)
	if len(h.Messages) != 1 || h.Messages[0].Status != "suppressed" || !strings.Contains(h.Messages[0].Reason, "landline") {
		t.Errorf("landline customer's history = %+v, want one suppressed outage message saying why", h.Messages)
	}
	if code := w.login("zhao").do("GET", "/api/v1/accounts/0100000011/messages", "", nil); code != http.StatusNotFound {
		t.Errorf("another grid's customer = %d, want 404", code)
	}
}

func TestStormOverview(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) { testStormOverview(t, stormWorldOn(t, driver)) })
	}
}

func testStormOverview(t *testing.T, w *world) {
	var st httpapi.Storm
	li := w.login("li")
	if code := li.do("GET", "/api/v1/storm", "", &st); code != 200 {
		t.Fatalf("storm = %d", code)
	}
	if len(st.Grids) != 2 || st.Out != 8 || st.AreasOut != 2 {
		t.Errorf("storm = %+v, want 2 grids, 8 out, 2 areas", st)
	}
	if g := st.Grids[0]; g.Grid != "G01" || g.Manager != "Wang" || len(g.Feeders) != 1 || g.Feeders[0].Feeder != "F-1" ||
		len(g.Feeders[0].Areas) != 1 || g.Feeders[0].Areas[0].State != "out" || g.Feeders[0].Areas[0].Outage != "OMS-W-1" {
		t.Errorf("G01 = %+v", g)
	}
	// The outbox file holds a message before the store records it sent
	// (stormWorldOn waits for the file): the minutes catch up.
	var queued, sent int
	eventually(t, func() bool {
		var now httpapi.Storm
		if code := li.do("GET", "/api/v1/storm", "", &now); code != 200 {
			t.Fatalf("storm = %d", code)
		}
		queued, sent = 0, 0
		for _, m := range now.SMS {
			queued += m.Queued
			sent += m.Sent
		}
		st.SMS = now.SMS
		return queued >= 7 && sent >= 7
	})
	if queued < 7 || sent < 7 {
		t.Errorf("sms per minute = %+v, want the 7 messages queued and sent", st.SMS)
	}
	w.powerOn("330000000011")
	var mine httpapi.Storm
	w.login("sun").do("GET", "/api/v1/storm", "", &mine)
	if len(mine.Grids) != 1 || mine.Grids[0].Grid != "G02" || mine.Grids[0].Feeders[0].Areas[0].State != "partial" || mine.Out != 1 {
		t.Errorf("G02's manager's storm = %+v, want G02 alone, partly out", mine)
	}
}

func TestCSVExport(t *testing.T) {
	w := stormWorld(t)
	resp := w.login("wang").resp("GET", "/api/v1/outages/OMS-W-1/customers?format=csv", "")
	defer resp.Body.Close()
	b := new(strings.Builder)
	bufio.NewReader(resp.Body).WriteTo(b)
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, `filename="customers-OMS-W-1.csv"`) {
		t.Errorf("Content-Disposition = %q, want the outage's name", cd)
	}
	if !strings.HasPrefix(b.String(), "\xEF\xBB\xBF") || strings.Contains(b.String(), "G02") || strings.Count(b.String(), "\n") != 7 {
		t.Errorf("csv = %q, want a BOM, a header and G01's 6 rows", b.String())
	}
	if code := w.as("").do("GET", "/api/v1/outages/OMS-W-1/customers?format=csv", "", nil); code != http.StatusUnauthorized {
		t.Errorf("csv without credentials = %d, want 401", code)
	}
}

// TestWorkspaceAccess: every new endpoint refuses the wrong role and
// anonymous callers.
func TestWorkspaceAccess(t *testing.T) {
	w := newWorld(t, "sqlite", worldCSV)
	w.outage("OMS-X-1", "TA-1")
	paths := map[string]string{"workspace": "/api/v1/outages/OMS-X-1/workspace", "storm": "/api/v1/storm", "events": "/api/v1/events",
		"hotline": "/api/v1/hotline?q=0100000001", "messages": "/api/v1/accounts/0100000001/messages", "audit": "/api/v1/audit", "me": "/api/v1/me"}
	allowed := map[string][]string{
		tokAdmin:    {"workspace", "storm", "events", "hotline", "messages", "audit", "me"},
		tokDispatch: {"workspace", "storm", "events", "hotline", "messages", "me"},
		tokMgr:      {"workspace", "storm", "events", "hotline", "messages", "me"},
		tokHotline:  {"hotline", "messages", "me"},
		tokIngest:   {"me"},
	}
	for tok, ok := range allowed {
		for name, p := range paths {
			want := http.StatusForbidden
			if slices.Contains(ok, name) {
				want = 200
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, "GET", w.srv.URL+p, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cancel()
			if resp.StatusCode != want {
				t.Errorf("GET %s as %s = %d, want %d", p, tok[:8], resp.StatusCode, want)
			}
		}
	}
	for _, p := range paths {
		if code, _ := w.as("").raw("GET", p, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s anonymous = %d, want 401", p, code)
		}
	}
	if code := w.as(tokAdmin).do("GET", "/api/v1/outages/NOPE/workspace", "", nil); code != http.StatusNotFound {
		t.Errorf("workspace of an unknown outage = %d, want 404", code)
	}
}

// TestLiveEvents: the stream sends the asker's outages at once, then again
// when a count changes.
func TestLiveEvents(t *testing.T) {
	w := stormWorld(t)
	resp := w.login("wang").resp("GET", "/api/v1/events", "")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	events := make(chan map[string]json.RawMessage, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		name := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && name == "outages":
				var m map[string]json.RawMessage
				json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m)
				events <- m
			}
		}
		close(events)
	}()
	counts := func() map[string]int {
		select {
		case m, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			var list []struct {
				ID     string
				Counts map[string]int
			}
			json.Unmarshal(m["outages"], &list)
			if len(list) != 1 || list[0].ID != "OMS-W-1" {
				t.Fatalf("outages = %s", m["outages"])
			}
			return list[0].Counts
		case <-time.After(20 * time.Second):
			t.Fatal("no event within 20s")
		}
		return nil
	}
	if c := counts(); c["affected"] != 6 || c["dark"] != 6 {
		t.Errorf("first event's counts = %v, want G01's: 6 affected, 6 dark", c)
	}
	w.powerOn("330000000002")
	for {
		if c := counts(); c["dark"] == 5 {
			if c["restored"] != 1 {
				t.Errorf("counts after a meter came back = %v", c)
			}
			break
		}
	}
}

// TestShutdownEndsStreams: an open page does not hold up a shutdown.
func TestShutdownEndsStreams(t *testing.T) {
	w := newWorld(t, "sqlite", worldCSV)
	srv := httpapi.New(httpapi.Config{Listen: "127.0.0.1:0"}, httpapi.AuthConfig{}, httpapi.Deps{
		Outages: w.rules, Deliveries: w.outbox, Quality: w.reg, Directory: w.reg, History: w.outbox, Overview: w.rules,
	}, zerolog.Nop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("shutdown with a page listening = %v, want a clean stop", err)
	}
}
