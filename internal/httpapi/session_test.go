package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// TestLoginSession: a person logs in with a password and gets an HttpOnly,
// SameSite=Strict cookie (Secure behind TLS); writes need the CSRF token;
// logout ends the session on the server.
func TestLoginSession(t *testing.T) {
	w := newWorld(t, "sqlite", worldCSV)
	anon := w.as("")
	if code := anon.do("POST", "/api/v1/login", `{"name":"li","password":"wrong-password"}`, nil); code != http.StatusUnauthorized {
		t.Errorf("wrong password = %d, want 401", code)
	}
	if code := anon.do("POST", "/api/v1/login", `{"name":"nobody","password":"`+password+`"}`, nil); code != http.StatusUnauthorized {
		t.Errorf("unknown user = %d, want 401", code)
	}
	resp := anon.resp("POST", "/api/v1/login", `{"name":"li","password":"`+password+`"}`)
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "gridbell_session" {
			cookie = c
		}
	}
	if resp.StatusCode != 200 || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure {
		t.Fatalf("login = %d, cookie %+v; want 200 and an HttpOnly SameSite=Strict cookie (not Secure without TLS)", resp.StatusCode, cookie)
	}
	req, _ := http.NewRequest("POST", w.srv.URL+"/api/v1/login", strings.NewReader(`{"name":"li","password":"`+password+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-Proto", "https")
	tls, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tls.Body.Close()
	if cs := tls.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("login behind a TLS proxy: cookies %+v, want Secure", cs)
	}
	// A form post (not JSON) cannot log in: no login CSRF from other sites.
	req, _ = http.NewRequest("POST", w.srv.URL+"/api/v1/login", strings.NewReader("name=li&password="+password))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form login = %v %v, want 415", resp.StatusCode, err)
	}

	li := w.login("li")
	var me struct {
		Name, Role, CSRF, TimeZone string
		Session                    bool
	}
	if code := li.do("GET", "/api/v1/me", "", &me); code != 200 || me.Name != "li" || me.Role != "dispatcher" || !me.Session || me.CSRF == "" || me.TimeZone != "Asia/Shanghai" {
		t.Errorf("me = %d %+v", code, me)
	}
	w.outage("OMS-S-1", "TA-1")
	csrf := li.csrf
	li.csrf = ""
	if code := li.do("POST", "/api/v1/outages/OMS-S-1/confirm", `{"reason":"x"}`, nil); code != http.StatusForbidden {
		t.Errorf("a session's write without X-CSRF-Token = %d, want 403", code)
	}
	li.csrf = "forged"
	if code := li.do("POST", "/api/v1/outages/OMS-S-1/confirm", `{"reason":"x"}`, nil); code != http.StatusForbidden {
		t.Errorf("a session's write with a wrong X-CSRF-Token = %d, want 403", code)
	}
	li.csrf = csrf
	if code := li.do("POST", "/api/v1/outages/OMS-S-1/confirm", `{"reason":"crew reports all back"}`, nil); code != 200 {
		t.Errorf("a session's write with its CSRF token = %d, want 200", code)
	}
	// Logging out a live session needs its CSRF token (issue 21): another
	// site cannot end it.
	li.csrf = ""
	if code := li.do("POST", "/api/v1/logout", "", nil); code != http.StatusForbidden {
		t.Errorf("logout without X-CSRF-Token = %d, want 403", code)
	}
	if code := li.do("GET", "/api/v1/me", "", nil); code != 200 {
		t.Errorf("me after a refused logout = %d, want 200", code)
	}
	li.csrf = csrf
	if code := li.do("POST", "/api/v1/logout", "", nil); code != http.StatusNoContent {
		t.Errorf("logout = %d", code)
	}
	if code := li.do("GET", "/api/v1/me", "", nil); code != http.StatusUnauthorized {
		t.Errorf("me after logout = %d, want 401", code)
	}

	// Five wrong passwords lock the name for a minute, even with the right one.
	for range 5 {
		anon.do("POST", "/api/v1/login", `{"name":"sun","password":"guess-guess"}`, nil)
	}
	if code := anon.do("POST", "/api/v1/login", `{"name":"sun","password":"`+password+`"}`, nil); code != http.StatusTooManyRequests {
		t.Errorf("login after 5 wrong passwords = %d, want 429", code)
	}
}

// TestAuditLog: confirmations, exports and logins land in the audit log
// with the person's name, on both stores; only an admin reads it.
func TestAuditLog(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver, worldCSV)
			w.outage("OMS-A-1", "TA-1", "TA-2")
			li, wang := w.login("li"), w.login("wang")
			if code := li.do("POST", "/api/v1/outages/OMS-A-1/confirm", `{"reason":"crew on site","by":"someone else"}`, nil); code != 200 {
				t.Fatalf("confirm = %d", code)
			}
			if code, _ := wang.raw("GET", "/api/v1/outages/OMS-A-1/customers?format=csv", ""); code != 200 {
				t.Fatalf("csv = %d", code)
			}
			if code := li.do("GET", "/api/v1/audit", "", nil); code != http.StatusForbidden {
				t.Errorf("a dispatcher reading the audit log = %d, want 403", code)
			}
			var log struct{ Entries []httpapi.AuditEntry }
			if code := w.login("root").do("GET", "/api/v1/audit", "", &log); code != 200 {
				t.Fatalf("audit = %d", code)
			}
			got := map[string]httpapi.AuditEntry{}
			for _, e := range log.Entries {
				got[e.Action+" "+e.Name] = e
			}
			if e, ok := got["confirm li"]; !ok || e.Target != "OMS-A-1" || !strings.Contains(e.Detail, "crew on site") || e.Role != "dispatcher" {
				t.Errorf("confirm entry = %+v (log %+v)", e, log.Entries)
			}
			if e, ok := got["export wang"]; !ok || e.Target != "OMS-A-1" {
				t.Errorf("export entry = %+v (log %+v)", e, log.Entries)
			}
			for _, k := range []string{"login li", "login wang", "login root"} {
				if _, ok := got[k]; !ok {
					t.Errorf("no %q entry in %+v", k, log.Entries)
				}
			}
			var o struct {
				ConfirmedBy string `json:"confirmed_by"`
			}
			w.as(tokAdmin).do("GET", "/api/v1/outages/OMS-A-1", "", &o)
			if o.ConfirmedBy != "li" {
				t.Errorf("confirmed_by = %q, want the logged-in name li (not the body's by)", o.ConfirmedBy)
			}
			var only struct{ Entries []httpapi.AuditEntry }
			w.as(tokAdmin).do("GET", "/api/v1/audit?action=export", "", &only)
			if len(only.Entries) != 1 || only.Entries[0].Name != "wang" {
				t.Errorf("audit?action=export = %+v, want wang's export alone", only.Entries)
			}
		})
	}
}

// TestConfirmWithDarkMeters (docs/interfaces.md §6): 409 while meters are dark unless
// a reason is given; then the outage needs attention until they are back.
func TestConfirmWithDarkMeters(t *testing.T) {
	w := newWorld(t, "sqlite", worldCSV)
	w.outage("OMS-C-1", "TA-2")
	disp := w.as(tokDispatch)
	code, body := disp.raw("POST", "/api/v1/outages/OMS-C-1/confirm", "")
	if code != http.StatusConflict || !strings.Contains(string(body), `"dark":2`) {
		t.Fatalf("confirm with 2 customers dark, no reason = %d %s, want 409 naming 2 dark", code, body)
	}
	if code := disp.do("POST", "/api/v1/outages/OMS-C-1/confirm", `{"reason":"  "}`, nil); code != http.StatusConflict {
		t.Errorf("confirm with a blank reason = %d, want 409", code)
	}
	if code := w.as(tokMgr).do("POST", "/api/v1/outages/OMS-C-1/confirm", `{"reason":"x"}`, nil); code != http.StatusForbidden {
		t.Errorf("a manager confirming = %d, want 403", code)
	}
	if code := disp.do("POST", "/api/v1/outages/NOPE/confirm", `{"reason":"x"}`, nil); code != http.StatusNotFound {
		t.Errorf("confirming an unknown outage = %d, want 404", code)
	}
	if code := disp.do("POST", "/api/v1/outages/OMS-C-1/confirm", `{"reason":"crew sees feeder live"}`, nil); code != 200 {
		t.Fatalf("confirm with a reason = %d", code)
	}
	attention := func() []string {
		var l struct{ Outages []struct{ ID string } }
		disp.do("GET", "/api/v1/outages?status=attention", "", &l)
		var ids []string
		for _, o := range l.Outages {
			ids = append(ids, o.ID)
		}
		return ids
	}
	if got := attention(); len(got) != 1 || got[0] != "OMS-C-1" {
		t.Errorf("needs attention = %v, want OMS-C-1", got)
	}
	w.powerOn("330000000011", "330000000012")
	if got := attention(); len(got) != 0 {
		t.Errorf("needs attention after the meters came back = %v, want none", got)
	}
	// Nothing dark: no reason needed.
	w.outage("OMS-C-2", "TA-1")
	w.powerOn("330000000001", "330000000002", "330000000003", "330000000004", "330000000005", "330000000006")
	if code := disp.do("POST", "/api/v1/outages/OMS-C-2/confirm", "", nil); code != 200 {
		t.Errorf("confirm with every meter back, no reason = %d, want 200", code)
	}
}
