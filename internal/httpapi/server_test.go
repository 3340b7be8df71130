package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/secret"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

const contactsCSV = `account,meter,area,grid,manager,phone
0100000001,330000000001,TA-1,G01,Wang,13812345601
0100000002,330000000002,TA-2,G02,Sun,无
`

func registry(t *testing.T) *contacts.Registry {
	t.Helper()
	reg, err := contacts.Open(context.Background(), storetest.Open(t, "sqlite"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Import(context.Background(), strings.NewReader(contactsCSV), nil); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestAuth(t *testing.T) {
	auth := httpapi.AuthConfig{Tokens: []httpapi.Token{
		{Token: secret.String("adm-0123456789abcdef"), Role: httpapi.RoleAdmin},
		{Token: secret.String("disp-0123456789abcdef"), Role: httpapi.RoleDispatcher},
		{Token: secret.String("mgr-0123456789abcdef"), Role: httpapi.RoleManager, Grids: []string{"G01"}},
		{Token: secret.String("ing-0123456789abcdef"), Role: httpapi.RoleIngest},
	}}
	posted := 0
	events := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posted++; w.WriteHeader(http.StatusAccepted) })
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Listen: "127.0.0.1:0"}, auth,
		httpapi.Deps{Quality: registry(t), OMSEvents: events}, zerolog.Nop()).Handler())
	defer srv.Close()

	cases := []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 200},
		{"GET", "/", "", 200},
		{"GET", "/api/v1/outages", "", 401},
		{"GET", "/api/v1/outages", "wrong", 401},
		{"GET", "/api/v1/outages", "mgr-0123456789abcdef", 200},
		{"GET", "/api/v1/outages", "ing-0123456789abcdef", 403},
		{"GET", "/api/v1/outages/X", "adm-0123456789abcdef", 404},
		{"POST", "/api/v1/outages/X/confirm", "mgr-0123456789abcdef", 403},
		{"POST", "/api/v1/outages/X/confirm", "disp-0123456789abcdef", 404},
		{"GET", "/api/v1/contacts/quality?grid=G02", "mgr-0123456789abcdef", 403},
		{"GET", "/api/v1/contacts/quality?grid=G02", "disp-0123456789abcdef", 200},
		{"POST", "/api/v1/oms/events", "disp-0123456789abcdef", 403},
		{"POST", "/api/v1/oms/events", "ing-0123456789abcdef", 202},
		{"POST", "/api/v1/oms/events", "adm-0123456789abcdef", 202},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader("{}"))
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s as %q = %d, want %d", c.method, c.path, c.token, resp.StatusCode, c.want)
		}
	}
	if posted != 2 {
		t.Errorf("event handler reached %d times, want 2 (ingest and admin only)", posted)
	}

	// A manager sees only the grids the token names, totals included.
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/contacts/quality", nil)
	req.Header.Set("Authorization", "Bearer mgr-0123456789abcdef")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep contacts.Report
	json.NewDecoder(resp.Body).Decode(&rep)
	if len(rep.Grids) != 1 || rep.Grids[0].Grid != "G01" || rep.Total.Accounts != 1 {
		t.Errorf("manager's quality report = %+v, want G01 alone", rep)
	}
}

func TestOpenWithoutTokensOnlyOnLoopback(t *testing.T) {
	if err := httpapi.Validate(httpapi.Config{Listen: "127.0.0.1:8080"}, httpapi.AuthConfig{}); err != nil {
		t.Errorf("loopback without tokens: %v", err)
	}
	if err := httpapi.Validate(httpapi.Config{Listen: "[::1]:8080"}, httpapi.AuthConfig{}); err != nil {
		t.Errorf("IPv6 loopback without tokens: %v", err)
	}
	for _, l := range []string{"0.0.0.0:8080", ":8080", "10.1.2.3:8080"} {
		if err := httpapi.Validate(httpapi.Config{Listen: l}, httpapi.AuthConfig{}); err == nil {
			t.Errorf("listen %s without tokens was accepted", l)
		}
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{}, httpapi.AuthConfig{}, httpapi.Deps{}, zerolog.Nop()).Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/outages")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("open API = %d, want 200", resp.StatusCode)
	}
}
