package rules

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.FixedZone("CST", 8*3600))

// testEngine is an engine driven without Run: each step is one batch.
type testEngine struct {
	*Engine
	t   *testing.T
	clk *clock.Fake
	db  *store.DB
}

func newTestEngine(t *testing.T, cfg Config) *testEngine {
	db := storetest.Open(t, "sqlite")
	openSink(t, db)
	clk := clock.NewFake(t0)
	e, err := New(cfg, db, openDirectory(t, db, "testdata/contacts.csv"), tableSink{}, clk, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return &testEngine{Engine: e, t: t, clk: clk, db: db}
}

// at applies evs at clock time t0+d and returns the kinds of intents written.
func (te *testEngine) at(d time.Duration, evs ...event.Event) []string {
	te.t.Helper()
	before := len(readOutbox(te.t, te.db))
	te.clk.Set(t0.Add(d))
	r := &request{evs: evs, done: make(chan error, 1)}
	te.process([]*request{r})
	if err := <-r.done; err != nil {
		te.t.Fatal(err)
	}
	var kinds []string
	for _, s := range readOutbox(te.t, te.db)[before:] {
		kinds = append(kinds, s.Kind+":"+s.Account+s.To)
	}
	return kinds
}

// count is how many of kinds are k.
func count(kinds []string, k string) int {
	n := 0
	for _, v := range kinds {
		if v == k {
			n++
		}
	}
	return n
}

func meterEv(id string, typ event.MeterEventType, d time.Duration) event.Event {
	return event.Event{Meter: &event.MeterEvent{Meter: id, Type: typ, TS: t0.Add(d)}}
}

func readingEv(id string, d time.Duration, bal float64) event.Event {
	return event.Event{Reading: &event.Reading{Meter: id, TS: t0.Add(d), KWh: 1, Balance: &bal}}
}

func TestMomentaryDecision(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name string
		on   time.Duration // power_on event time after the gasp at 0; <0 = none
		tick time.Duration
		want int // outage intents for M0202's account
	}{
		{"back within the window", 20 * s, 61 * s, 0},
		{"back just before the window closes", 59 * s, 61 * s, 0},
		{"no power back", -1, 61 * s, 1},
		{"window not yet closed", -1, 59 * s, 0},
		{"back after the decision", 90 * s, 61 * s, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := newTestEngine(t, Config{})
			te.at(0, meterEv("M0202", event.PowerOff, 0))
			var got []string
			if tt.on >= 0 && tt.on < tt.tick {
				got = append(got, te.at(tt.on, meterEv("M0202", event.PowerOn, tt.on))...)
			}
			got = append(got, te.at(tt.tick)...)
			if n := count(got, "outage:A0202"); n != tt.want {
				t.Errorf("outage intents = %d (%v), want %d", n, got, tt.want)
			}
		})
	}
}

func TestAreaInference(t *testing.T) {
	tests := []struct {
		ratio float64
		dark  int // of TA-02's 4 meters
		want  int // customers told
	}{
		{0.5, 1, 1},
		{0.5, 2, 4},
		{0.75, 2, 2},
		{0.75, 3, 4},
		{1, 3, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%d", tt.ratio, tt.dark), func(t *testing.T) {
			te := newTestEngine(t, Config{AreaDarkRatio: tt.ratio})
			var evs []event.Event
			for k := 1; k <= tt.dark; k++ {
				evs = append(evs, meterEv(fmt.Sprintf("M020%d", k), event.PowerOff, 0))
			}
			te.at(0, evs...)
			n := 0
			for _, k := range te.at(61 * time.Second) {
				if k[:7] == "outage:" {
					n++
				}
			}
			if n != tt.want {
				t.Errorf("ratio %v with %d dark: %d told, want %d", tt.ratio, tt.dark, n, tt.want)
			}
		})
	}
}

func TestBalanceDecision(t *testing.T) {
	f := func(balances []float64, want []string) {
		t.Helper()
		te := newTestEngine(t, Config{})
		var got []string
		for i, b := range balances {
			got = append(got, te.at(time.Duration(i)*time.Minute, readingEv("M0304", time.Duration(i)*time.Minute, b))...)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("balances %v: intents %v, want %v", balances, got, want)
		}
	}
	f([]float64{45, 31, 30}, nil)
	f([]float64{45, 29.99}, []string{"balance_low:A0304"})
	f([]float64{25, 20, 10}, []string{"balance_low:A0304"})
	f([]float64{25, 35, 25}, []string{"balance_low:A0304", "balance_low:A0304"})
	f([]float64{25, 0}, []string{"balance_low:A0304", "balance_exhausted:A0304"})
	f([]float64{50, -3, -5}, []string{"balance_exhausted:A0304"})
	f([]float64{-3, 5, -1}, []string{"balance_exhausted:A0304", "balance_exhausted:A0304"})
}

func TestETRDecision(t *testing.T) {
	tests := []struct {
		etr  time.Duration // second ETR, after the first at t0+3h
		want bool
	}{
		{3*time.Hour + 29*time.Minute, false},
		{3*time.Hour + 30*time.Minute, true},
		{2*time.Hour + 30*time.Minute, true},
		{3 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.etr.String(), func(t *testing.T) {
			te := newTestEngine(t, Config{})
			oms := func(d, etr time.Duration, status string) event.Event {
				e := t0.Add(etr)
				return event.Event{Outage: &event.OMSOutage{OutageID: "O1", Kind: "fault", Status: status,
					Meters: []string{"M0101"}, ETR: &e, UpdatedAt: t0.Add(d)}}
			}
			te.at(0, oms(0, 3*time.Hour, "started"))
			got := te.at(time.Minute, oms(time.Minute, tt.etr, "etr_updated"))
			if sent := len(got) == 1 && got[0] == "etr_update:A0101"; sent != tt.want {
				t.Errorf("ETR 3h → %v: intents %v, want etr_update %v", tt.etr, got, tt.want)
			}
		})
	}
}

func TestRemoteTripIsNeverAnOutage(t *testing.T) {
	te := newTestEngine(t, Config{})
	got := te.at(0, meterEv("M0304", event.RemoteTrip, 0), meterEv("M0304", event.PowerOff, 0))
	got = append(got, te.at(2*time.Minute)...)
	if len(got) != 0 {
		t.Errorf("tripped meter's gasp: intents %v, want none", got)
	}
	if os := te.Outages(""); len(os) != 0 {
		t.Errorf("Outages() = %+v, want none", os)
	}
}

func TestUnknownMeterKeepsStateSendsNothing(t *testing.T) {
	te := newTestEngine(t, Config{})
	got := te.at(0, meterEv("X1", event.PowerOff, 0), readingEv("X2", 0, 1))
	got = append(got, te.at(2*time.Minute)...)
	if len(got) != 0 {
		t.Errorf("unknown meters: intents %v, want none", got)
	}
	i := te.meterIdx["X1"]
	if m := te.meters[i]; m.st != stDark || m.flags&fConfirmed == 0 {
		t.Errorf("unknown meter X1: state %d flags %b, want dark and confirmed", m.st, m.flags)
	}
}

func TestByPriority(t *testing.T) {
	in := []event.Intent{{Key: "a", Priority: 1}, {Key: "b", Priority: 0}, {Key: "c", Priority: 2}, {Key: "d", Priority: 0}, {Key: "e", Priority: 1}}
	var l intentList
	for _, it := range in {
		l.add(it)
	}
	var got string
	for _, it := range l.byPriority() {
		got += it.Key
	}
	if got != "bdaec" {
		t.Errorf("byPriority order = %s, want bdaec", got)
	}
	// Across chunks, and stable: 10,000 intents of priorities 2, 1, 0, … in
	// turn come out as every 0 in emission order, then every 1, then 2.
	l.reset()
	for i := range 10000 {
		l.add(event.Intent{Key: fmt.Sprint(i), Priority: event.Priority(2 - i%3)})
	}
	out := l.byPriority()
	if len(out) != 10000 {
		t.Fatalf("byPriority returned %d intents, want 10000", len(out))
	}
	for i := 1; i < len(out); i++ {
		a, b := out[i-1], out[i]
		ka, _ := strconv.Atoi(a.Key)
		kb, _ := strconv.Atoi(b.Key)
		if a.Priority > b.Priority || a.Priority == b.Priority && ka > kb {
			t.Fatalf("byPriority: %s (priority %d) before %s (priority %d)", a.Key, a.Priority, b.Key, b.Priority)
		}
	}
}

func TestEncodeTold(t *testing.T) {
	l := map[string]uint8{"0100012345": lNotified | lETR, `a"b`: lRestored}
	var back map[string]uint8
	if err := json.Unmarshal([]byte(encodeTold(l)), &back); err != nil || len(back) != 2 || back[`a"b`] != lRestored || back["0100012345"] != lNotified|lETR {
		t.Errorf("encodeTold round trip = %v (%v), want %v", back, err, l)
	}
}

func TestLateGaspWaitsForItsPowerOn(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name    string
		powerOn bool
		want    int
	}{
		{"power_on right behind it", true, 0},
		{"no power_on", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := newTestEngine(t, Config{})
			// a backlog: the gasp stamped 0 arrives at 90 s, past its window
			got := te.at(90*s, meterEv("M0202", event.PowerOff, 0))
			if tt.powerOn {
				got = append(got, te.at(91*s, meterEv("M0202", event.PowerOn, 30*s))...)
			}
			got = append(got, te.at(93*s)...)
			if n := count(got, "outage:A0202"); n != tt.want {
				t.Errorf("outage intents = %d (%v), want %d", n, got, tt.want)
			}
		})
	}
}
