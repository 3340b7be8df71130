package rules

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// step is one line of a golden case's events.jsonl: an input, a control
// (restart, confirm, still_out), or an assertion, at a clock time. A line
// with only "at" moves the clock and ticks.
type step struct {
	At           time.Time       `json:"at"`
	Reading      *jsonReading    `json:"reading"`
	Meter        *jsonMeterEvent `json:"meter"`
	Concentrator *jsonConcEvent  `json:"concentrator"`
	OMS          *jsonOMS        `json:"oms"`
	Billing      *jsonBilling    `json:"billing"`
	Restart      bool            `json:"restart"`
	Import       string          `json:"import"` // a contacts file another process imports into the store
	Confirm      *struct{ ID, By string }
	StillOut     *jsonStillOut     `json:"still_out"`
	Assert       *assertion        `json:"assert"`
	Batch        []json.RawMessage `json:"batch"` // several inputs in one Handle call
}

type jsonReading struct {
	Meter   string     `json:"meter"`
	TS      *time.Time `json:"ts"`
	KWh     float64    `json:"kwh"`
	Balance *float64   `json:"balance"`
}

type jsonMeterEvent struct {
	Meter string     `json:"meter"`
	TS    *time.Time `json:"ts"`
	Type  string     `json:"type"`
}

type jsonConcEvent struct {
	Concentrator string     `json:"concentrator"`
	TS           *time.Time `json:"ts"`
	Type         string     `json:"type"`
}

type jsonOMS struct {
	OutageID  string     `json:"outage_id"`
	Kind      string     `json:"kind"`
	Status    string     `json:"status"`
	Areas     []string   `json:"areas"`
	Feeders   []string   `json:"feeders"`
	Meters    []string   `json:"meters"`
	Start     *time.Time `json:"start"`
	ETR       *time.Time `json:"etr"`
	Cause     string     `json:"cause"`
	UpdatedAt *time.Time `json:"updated_at"`
}

type jsonBilling struct {
	Account      string     `json:"account"`
	Type         string     `json:"type"`
	Amount       *float64   `json:"amount"`
	Balance      *float64   `json:"balance"`
	Due          string     `json:"due"`
	DisconnectAt *time.Time `json:"disconnect_at"`
	At           *time.Time `json:"at"`
}

type jsonStillOut struct {
	Phone    string   `json:"phone"`
	Accounts []string `json:"accounts"`
}

type assertion struct {
	Outage      string               `json:"outage"`
	Status      string               `json:"status"`
	Source      string               `json:"source"`
	Dark        []string             `json:"dark"`
	Restored    []string             `json:"restored"`
	Unknown     []string             `json:"unknown"`
	ReportedOut []string             `json:"reported_out"`
	Affected    *int                 `json:"affected"`
	Counts      *Counts              `json:"counts"` // the whole Counts (notified and delivered are notify's: 0 here)
	Storm       *bool                `json:"storm"`
	Customers   *int                 `json:"customers"`
	LastSeen    map[string]time.Time `json:"last_seen"` // of dark meters
}

func or(t *time.Time, at time.Time) time.Time {
	if t != nil {
		return *t
	}
	return at
}

// events turns a step's input into events; ts defaults to the step's time.
func (s *step) events(t *testing.T) []event.Event {
	var evs []event.Event
	at := s.At
	if s.Reading != nil {
		evs = append(evs, event.Event{Reading: &event.Reading{Meter: s.Reading.Meter, TS: or(s.Reading.TS, at), KWh: s.Reading.KWh, Balance: s.Reading.Balance}})
	}
	if s.Meter != nil {
		evs = append(evs, event.Event{Meter: &event.MeterEvent{Meter: s.Meter.Meter, TS: or(s.Meter.TS, at), Type: event.MeterEventType(s.Meter.Type)}})
	}
	if s.Concentrator != nil {
		evs = append(evs, event.Event{Concentrator: &event.ConcentratorEvent{Concentrator: s.Concentrator.Concentrator, TS: or(s.Concentrator.TS, at), Type: event.MeterEventType(s.Concentrator.Type)}})
	}
	if o := s.OMS; o != nil {
		evs = append(evs, event.Event{Outage: &event.OMSOutage{OutageID: o.OutageID, Kind: o.Kind, Status: o.Status, Areas: o.Areas,
			Feeders: o.Feeders, Meters: o.Meters, Start: o.Start, ETR: o.ETR, Cause: o.Cause, UpdatedAt: or(o.UpdatedAt, at)}})
	}
	if b := s.Billing; b != nil {
		evs = append(evs, event.Event{Billing: &event.BillingEvent{Account: b.Account, Type: b.Type, Amount: b.Amount, Balance: b.Balance,
			Due: b.Due, DisconnectAt: b.DisconnectAt, At: or(b.At, at)}})
	}
	for _, raw := range s.Batch {
		var sub step
		if err := json.Unmarshal(raw, &sub); err != nil {
			t.Fatalf("batch line: %v", err)
		}
		sub.At = at
		evs = append(evs, sub.events(t)...)
	}
	return evs
}

// want is one line of want.jsonl: the intent's identity and the variables
// that matter (a subset of those sent).
type want struct {
	Kind      string            `json:"kind"`
	Account   string            `json:"account"`
	To        string            `json:"to"`
	Ref       string            `json:"ref"`
	Priority  *int              `json:"priority"`
	NotBefore string            `json:"not_before"`
	Vars      map[string]string `json:"vars"`
}

func (w want) id() string { return w.Kind + " " + w.Account + w.To + " " + w.Ref }

func (w want) matches(s sent) bool {
	if w.Kind != s.Kind || w.Account != s.Account || w.To != s.To || w.Ref != s.Ref {
		return false
	}
	if (w.Priority != nil && *w.Priority != s.Priority) || (w.NotBefore != "" && w.NotBefore != s.NotBefore) {
		return false
	}
	for k, v := range w.Vars {
		if s.Vars[k] != v {
			return false
		}
	}
	return true
}

// harness runs one engine over a store, restartable.
type harness struct {
	t       *testing.T
	cfg     Config
	db      *store.DB
	dir     Directory
	clk     *clock.Fake
	caseDir string
	e       *Engine
	cancel  context.CancelFunc
	done    chan error
}

func newHarness(t *testing.T, driver string, cfg Config, csvPath string, start time.Time) *harness {
	db := storetest.Open(t, driver)
	h := &harness{t: t, cfg: cfg, db: db, dir: openDirectory(t, db, csvPath), clk: clock.NewFake(start)}
	openSink(t, db)
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	cfg := h.cfg
	cfg.Tick = time.Hour // the test ticks by hand
	e, err := New(cfg, h.db, h.dir, tableSink{}, h.clk, zerolog.Nop())
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.e, h.cancel, h.done = e, cancel, make(chan error, 1)
	go func() { h.done <- e.Run(ctx) }()
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func (h *harness) step(s *step) {
	t, ctx := h.t, context.Background()
	t.Helper()
	h.clk.Set(s.At)
	var err error
	switch evs := s.events(t); {
	case s.Restart:
		h.stop()
		h.start()
	case s.Import != "":
		h.reimport(filepath.Join(h.caseDir, s.Import))
	case len(evs) > 0:
		err = h.e.Handle(ctx, evs)
	case s.Confirm != nil:
		err = h.e.Confirm(ctx, s.Confirm.ID, s.Confirm.By)
	case s.StillOut != nil:
		err = h.e.ReportStillOut(ctx, s.StillOut.Phone, s.StillOut.Accounts)
	case s.Assert != nil:
		h.check(s.Assert)
		return
	}
	if err != nil {
		t.Fatalf("at %s: %v", s.At.Format(time.TimeOnly), err)
	}
	if err := h.e.Tick(ctx); err != nil {
		t.Fatal(err)
	}
}

// reimport imports a contacts file as gridbell contacts import would: a
// registry of its own on the same store. The engine's registry sees it
// through Refresh, as the running service's reload loop calls it.
func (h *harness) reimport(path string) {
	h.t.Helper()
	openDirectory(h.t, h.db, path)
	reg := h.dir.(*contacts.Registry)
	if changed, err := reg.Refresh(context.Background()); err != nil || !changed {
		h.t.Fatalf("Refresh() after importing %s = %v, %v; want true, nil", path, changed, err)
	}
}

func (h *harness) check(a *assertion) {
	t := h.t
	t.Helper()
	if a.Storm != nil && h.e.StormMode() != *a.Storm {
		t.Errorf("StormMode() = %v, want %v", h.e.StormMode(), *a.Storm)
	}
	if a.Outage == "" {
		return
	}
	o, ok := h.e.Outage(a.Outage)
	if !ok {
		t.Fatalf("Outage(%q) not found; have %v", a.Outage, h.e.Outages(""))
	}
	if a.Status != "" && o.Status != a.Status {
		t.Errorf("Outage(%q).Status = %q, want %q", a.Outage, o.Status, a.Status)
	}
	if a.Source != "" && o.Source != a.Source {
		t.Errorf("Outage(%q).Source = %q, want %q", a.Outage, o.Source, a.Source)
	}
	if a.Affected != nil && o.Counts.Affected != *a.Affected {
		t.Errorf("Outage(%q).Counts.Affected = %d, want %d", a.Outage, o.Counts.Affected, *a.Affected)
	}
	if a.Counts != nil && o.Counts != *a.Counts {
		t.Errorf("Outage(%q).Counts = %+v, want %+v", a.Outage, o.Counts, *a.Counts)
	}
	v, _ := h.e.Verification(a.Outage)
	var dark []string
	for _, d := range v.Dark {
		dark = append(dark, d.Meter)
		if want, ok := a.LastSeen[d.Meter]; ok && (d.LastSeen == nil || !d.LastSeen.Equal(want)) {
			t.Errorf("Verification(%q): dark meter %s last seen %v, want %v", a.Outage, d.Meter, d.LastSeen, want)
		}
	}
	sameSet(t, "dark", dark, a.Dark)
	sameSet(t, "restored", v.Restored, a.Restored)
	sameSet(t, "unknown", v.Unknown, a.Unknown)
	sameSet(t, "reported_out", v.ReportedOut, a.ReportedOut)
	if a.Customers != nil {
		cs, _ := h.e.Customers(a.Outage, "")
		if len(cs) != *a.Customers {
			t.Errorf("Customers(%q) = %d lines, want %d", a.Outage, len(cs), *a.Customers)
		}
	}
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	if want == nil {
		return
	}
	g, w := slices.Clone(got), slices.Clone(want)
	sort.Strings(g)
	sort.Strings(w)
	if !slices.Equal(g, w) {
		t.Errorf("verification %s = %v, want %v", what, g, w)
	}
}

func readJSONL[T any](t *testing.T, path string) []T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		var v T
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		out = append(out, v)
	}
	return out
}

func readCaseConfig(t *testing.T, dir string) Config {
	var cfg Config
	if b, err := os.ReadFile(filepath.Join(dir, "config.yaml")); err == nil {
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("config.yaml: %v", err)
		}
	}
	cfg.Defaults()
	return cfg
}

// TestGolden replays every case in testdata with a fake clock and compares
// the intents written with want.jsonl.
func TestGolden(t *testing.T) {
	cases, _ := filepath.Glob("testdata/*/events.jsonl")
	if len(cases) == 0 {
		t.Fatal("no golden cases")
	}
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			for _, c := range cases {
				dir := filepath.Dir(c)
				t.Run(filepath.Base(dir), func(t *testing.T) { runGolden(t, driver, dir) })
			}
		})
	}
}

func runGolden(t *testing.T, driver, dir string) {
	steps := readJSONL[step](t, filepath.Join(dir, "events.jsonl"))
	wants := readJSONL[want](t, filepath.Join(dir, "want.jsonl"))
	csvPath := filepath.Join(dir, "contacts.csv")
	if _, err := os.Stat(csvPath); err != nil {
		csvPath = filepath.Join("testdata", "contacts.csv")
	}
	h := newHarness(t, driver, readCaseConfig(t, dir), csvPath, steps[0].At)
	h.caseDir = dir
	for i := range steps {
		h.step(&steps[i])
	}
	got := readOutbox(t, h.db)
	compareIntents(t, got, wants)
}

func compareIntents(t *testing.T, got []sent, wants []want) {
	t.Helper()
	used := make([]bool, len(got))
	wants = slices.Clone(wants)
	spec := func(w want) int { // match the most specific wants first
		n := len(w.Vars)
		if w.Priority != nil {
			n++
		}
		if w.NotBefore != "" {
			n++
		}
		return n
	}
	slices.SortStableFunc(wants, func(a, b want) int { return spec(b) - spec(a) })
	for _, w := range wants {
		found := false
		for i, s := range got {
			if !used[i] && w.matches(s) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing intent %s vars %v", w.id(), w.Vars)
		}
	}
	for i, s := range got {
		if !used[i] {
			b, _ := json.Marshal(s)
			t.Errorf("unexpected intent %s", b)
		}
	}
	if t.Failed() {
		var b strings.Builder
		for _, s := range got {
			j, _ := json.Marshal(s)
			fmt.Fprintf(&b, "%s\n", j)
		}
		t.Logf("all intents:\n%s", b.String())
	}
}
