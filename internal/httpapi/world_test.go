package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/secret"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/notify/twiliotest"
	"github.com/gridbell/gridbell/rules"
)

// password is every test user's password; passwordHash its stored form
// (gridbell auth hash-password).
const (
	password     = "secret-pass"
	passwordHash = "pbkdf2-sha256$600000$psJQcHw7MwmHkkZFuiD9KA$T8BAexZcN94sRKzs2pNUpHSfXmMAZw3E7+MHcA2OvMM"
	twilioToken  = "twilio-auth-token"
)

// Tokens of the test world, one per role.
const (
	tokAdmin    = "admin-token-0123456789"
	tokDispatch = "dispatch-token-0123456789"
	tokMgr      = "g01-manager-token-0123456789"
	tokIngest   = "ingest-token-0123456789"
	tokHotline  = "ivr-token-0123456789"
)

// worldAuth has a person and a token for every role: wang manages G01 and
// may see numbers, zhao manages G01 and may not, sun manages G02; ops is an
// admin without pii, who may not dial the call list.
func worldAuth() httpapi.AuthConfig {
	a := httpapi.AuthConfig{
		Tokens: []httpapi.Token{
			{Token: tokAdmin, Role: httpapi.RoleAdmin},
			{Token: tokDispatch, Role: httpapi.RoleDispatcher},
			{Token: tokMgr, Role: httpapi.RoleManager, Grids: []string{"G01"}},
			{Token: tokIngest, Role: httpapi.RoleIngest},
			{Name: "ivr", Token: tokHotline, Role: httpapi.RoleHotline},
		},
		Users: []httpapi.User{
			{Name: "root", PasswordHash: passwordHash, Role: httpapi.RoleAdmin, PII: true},
			{Name: "ops", PasswordHash: passwordHash, Role: httpapi.RoleAdmin},
			{Name: "li", PasswordHash: passwordHash, Role: httpapi.RoleDispatcher},
			{Name: "wang", PasswordHash: passwordHash, Role: httpapi.RoleManager, Grids: []string{"G01"}, PII: true},
			{Name: "zhao", PasswordHash: passwordHash, Role: httpapi.RoleManager, Grids: []string{"G01"}},
			{Name: "sun", PasswordHash: passwordHash, Role: httpapi.RoleManager, Grids: []string{"G02"}},
			{Name: "hot", PasswordHash: passwordHash, Role: httpapi.RoleHotline},
		},
	}
	a.Defaults()
	return a
}

// worldCSV: TA-1 in grid G01, TA-2 in G02. Customers reachable by SMS,
// landline only, invalid, opted out; high-risk, life-support and important.
const worldCSV = `account,name,meter,area,feeder,grid,manager,manager_phone,class,phone,opt_out
0100000001,Resident One,330000000001,TA-1,F-1,G01,Wang,13900000101,resident,13812345601,
0100000002,City Hospital,330000000002,TA-1,F-1,G01,Wang,13900000101,high_risk,13812345602,
0100000003,Home Oxygen,330000000003,TA-1,F-1,G01,Wang,13900000101,life_support,0571-88886666,
0100000004,Water Works,330000000004,TA-1,F-1,G01,Wang,13900000101,important,无,
0100000005,Opted Out,330000000005,TA-1,F-1,G01,Wang,13900000101,resident,13812345605,是
0100000006,Shop Six,330000000006,TA-1,F-1,G01,Wang,13900000101,commercial,13812345606,
0100000011,Other Grid,330000000011,TA-2,F-2,G02,Sun,13900000102,high_risk,13812345611,
0100000012,Other Home,330000000012,TA-2,F-2,G02,Sun,13900000102,resident,13812345612,
`

// world is gridbell's operator side over a real store, contacts registry,
// rules engine and outbox (writing the outbox file), behind the HTTP API.
type world struct {
	t      *testing.T
	db     *store.DB
	reg    *contacts.Registry
	outbox *notify.Outbox
	rules  *rules.Engine
	store  *httpapi.Store
	srv    *httptest.Server
	file   string // the outbox file
	start  time.Time
}

func newWorld(t *testing.T, driver, csvText string) *world {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &world{t: t, db: storetest.Open(t, driver), start: time.Now().Add(-10 * time.Minute).Truncate(time.Second)}
	var err error
	if w.reg, err = contacts.Open(ctx, w.db, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.reg.Import(ctx, strings.NewReader(csvText), nil); err != nil {
		t.Fatal(err)
	}
	w.file = filepath.Join(t.TempDir(), "outbox.jsonl")
	cfg := notify.Config{OutboxFile: w.file, Twilio: notify.TwilioConfig{AuthToken: secret.String(twilioToken)}}
	cfg.Defaults()
	sender, err := notify.NewSender(cfg, t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if w.outbox, err = notify.NewOutbox(cfg, notify.QuietHours{}, w.db, w.reg, sender, clock.Real{}, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if w.rules, err = rules.New(rules.Config{}, w.db, w.reg, w.outbox, clock.Real{}, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if w.store, err = httpapi.OpenStore(ctx, w.db); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { w.outbox.Run(ctx); done <- struct{}{} }()
	go func() { w.rules.Run(ctx); done <- struct{}{} }()
	w.srv = httptest.NewServer(httpapi.New(httpapi.Config{Listen: "127.0.0.1:0", TimeZone: "Asia/Shanghai", TrustedProxies: []string{"127.0.0.1"}}, worldAuth(), httpapi.Deps{
		Outages: w.rules, Deliveries: w.outbox, Quality: w.reg, Store: w.store,
		TwilioStatus: w.outbox.StatusWebhook(), TwilioInbound: w.outbox.InboundWebhook(w.rules),
		Directory: w.reg, History: w.outbox, Overview: w.rules,
	}, zerolog.Nop()).Handler())
	t.Cleanup(func() {
		w.srv.Close()
		cancel()
		<-done
		<-done
	})
	return w
}

// handle applies events to the rules.
func (w *world) handle(evs ...event.Event) {
	w.t.Helper()
	if err := w.rules.Handle(context.Background(), evs); err != nil {
		w.t.Fatal(err)
	}
}

// outage starts OMS outage id over areas, begun 10 minutes ago.
func (w *world) outage(id string, areas ...string) {
	w.t.Helper()
	etr := w.start.Add(3 * time.Hour)
	w.handle(event.Event{Outage: &event.OMSOutage{OutageID: id, Kind: "fault", Status: "started", Areas: areas,
		Start: &w.start, ETR: &etr, Cause: "tree contact", UpdatedAt: w.start.Add(time.Minute)}})
}

// powerOn reports meters powered again now.
func (w *world) powerOn(meters ...string) {
	w.t.Helper()
	var evs []event.Event
	for _, m := range meters {
		evs = append(evs, event.Event{Meter: &event.MeterEvent{Meter: m, Type: event.PowerOn, TS: time.Now()}})
	}
	w.handle(evs...)
}

// powerOff reports meters dark now (a last gasp).
func (w *world) powerOff(meters ...string) {
	w.t.Helper()
	var evs []event.Event
	for _, m := range meters {
		evs = append(evs, event.Event{Meter: &event.MeterEvent{Meter: m, Type: event.PowerOff, TS: time.Now()}})
	}
	w.handle(evs...)
}

// sent waits until the outbox file holds n messages and returns them.
func (w *world) sent(n int) []map[string]string {
	w.t.Helper()
	var out []map[string]string
	eventually(w.t, func() bool {
		out = out[:0]
		f, err := os.Open(w.file)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]string
			json.Unmarshal(sc.Bytes(), &m)
			out = append(out, m)
		}
		return len(out) >= n
	})
	return out
}

// receipt posts a signed Twilio delivery receipt for message id.
func (w *world) receipt(id, to, status, code string) {
	w.t.Helper()
	form := url.Values{"MessageSid": {id}, "MessageStatus": {status}, "To": {to}}
	if code != "" {
		form.Set("ErrorCode", code)
	}
	w.twilio("/twilio/status", form, http.StatusNoContent)
}

// reply posts a customer's signed SMS reply.
func (w *world) reply(from, body string) {
	w.t.Helper()
	w.twilio("/twilio/inbound", url.Values{"From": {from}, "Body": {body}, "MessageSid": {"SM" + from + body}}, 200)
}

func (w *world) twilio(path string, form url.Values, want int) {
	w.t.Helper()
	req, _ := http.NewRequest("POST", w.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twiliotest.Sign(twilioToken, w.srv.URL+path, form))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		w.t.Fatalf("POST %s = %d, want %d", path, resp.StatusCode, want)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client talks to the world as a token holder or a logged-in person.
type client struct {
	t     *testing.T
	w     *world
	http  *http.Client
	token string
	csrf  string
}

func (w *world) as(token string) *client {
	return &client{t: w.t, w: w, http: http.DefaultClient, token: token}
}

// login logs name in and keeps the cookie and CSRF token.
func (w *world) login(name string) *client {
	w.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &client{t: w.t, w: w, http: &http.Client{Jar: jar}}
	var me struct{ CSRF string }
	if code := c.do("POST", "/api/v1/login", `{"name":"`+name+`","password":"`+password+`"}`, &me); code != 200 {
		w.t.Fatalf("login %s = %d", name, code)
	}
	c.csrf = me.CSRF
	return c
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *client) do(method, path, body string, out any) int {
	c.t.Helper()
	code, b := c.raw(method, path, body)
	if out != nil && code < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return code
}

func (c *client) raw(method, path, body string) (int, []byte) {
	c.t.Helper()
	resp := c.resp(method, path, body)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *client) resp(method, path, body string) *http.Response {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, _ := http.NewRequest(method, c.w.srv.URL+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}
