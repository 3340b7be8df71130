package sim

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/fleet"
)

// recorder is a mochi hook that keeps every publication in arrival order.
// OnPublish runs before the broker acknowledges, so once Run has returned
// everything it published is here.
type recorder struct {
	mochi.HookBase
	mu   sync.Mutex
	msgs []message
}

func (r *recorder) ID() string { return "recorder" }

func (r *recorder) Provides(b byte) bool { return b == mochi.OnPublish }

func (r *recorder) OnPublish(_ *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	r.mu.Lock()
	r.msgs = append(r.msgs, message{topic: pk.TopicName, payload: slices.Clone(pk.Payload)})
	r.mu.Unlock()
	return pk, nil
}

func (r *recorder) all() []message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// startBroker runs an embedded mochi broker on a free loopback port.
func startBroker(t *testing.T) (url string, rec *recorder) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rec = &recorder{}
	for _, h := range []mochi.Hook{new(auth.AllowHook), rec} {
		if err := s.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { s.Close() })
	return "tcp://" + addr, rec
}

// apiPost is one event posted to the fake gridbell API.
type apiPost struct {
	path, auth string
	body       map[string]any
}

// startAPI is a stand-in for gridbell's HTTP API that records event posts.
func startAPI(t *testing.T) (url string, posts func() []apiPost) {
	t.Helper()
	var mu sync.Mutex
	var got []apiPost
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("POST %s: body is not one JSON object: %v", r.URL.Path, err)
		}
		mu.Lock()
		got = append(got, apiPost{path: r.URL.Path, auth: r.Header.Get("Authorization"), body: body})
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []apiPost {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func testFleet() *fleet.Fleet {
	return fleet.Generate(fleet.Options{Customers: 240, Areas: 6, Grids: 2, Seed: 7, PrepaidShare: 0.3, Messy: true})
}

func stepNamed(t *testing.T, steps []Step, name string) Step {
	t.Helper()
	for _, s := range steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("Scenario has no step %q", name)
	return Step{}
}

func TestScenarioPlan(t *testing.T) {
	f := testFleet()
	steps := Scenario(f)
	if !slices.IsSortedFunc(steps, func(a, b Step) int { return int(a.At - b.At) }) {
		t.Errorf("Scenario steps are not sorted by time: %v", steps)
	}
	c := newCast(f)
	a, b, cc := c.area(0), c.area(1), c.area(2)

	fault := stepNamed(t, steps, "fault-a")
	if fault.Concentrator != a.conc || fault.Event != "power_off" || len(fault.Dark) != len(a.meters) {
		t.Errorf("fault-a = %v, want concentrator %s last gasp darkening all %d meters", fault, a.conc, len(a.meters))
	}
	if n := len(fault.Signals); n < len(a.meters)/4 || n > len(a.meters)/2 {
		t.Errorf("fault-a: %d of %d meters send a last gasp, want about a third", n, len(a.meters))
	}
	restore := stepNamed(t, steps, "restore-a")
	nested := stepNamed(t, steps, "nested-on")
	if len(nested.Signals) != 2 || len(restore.Lit) != len(a.meters)-2 {
		t.Errorf("restore-a lights %d, nested-on %d; want all but two, then the two", len(restore.Lit), len(nested.Signals))
	}
	nestedOff := stepNamed(t, steps, "nested-off")
	if !slices.Equal(nestedOff.Signals, nested.Signals) || nestedOff.At >= fault.At {
		t.Errorf("nested-off = %v, want the nested meters' own last gasps before fault-a", nestedOff)
	}
	for _, m := range nested.Signals {
		if slices.Contains(restore.Signals, m) || slices.Contains(restore.Lit, m) || slices.Contains(fault.Signals, m) {
			t.Errorf("nested meter %s is in fault-a's last gasps or restore-a", m)
		}
	}
	for _, tc := range []struct {
		name, area string
		at         time.Duration
	}{
		{"nested-off", a.name, 1 * time.Second},
		{"fault-a", a.name, 2 * time.Second},
		{"blip-off", b.name, 8 * time.Second},
		{"blip-on", b.name, 18 * time.Second},
		{"fault-c", cc.name, 15 * time.Second},
		{"oms-etr", a.name, 50 * time.Second},
		{"restore-a", a.name, 90 * time.Second},
		{"restore-c", cc.name, 100 * time.Second},
		{"nested-on", a.name, 150 * time.Second},
	} {
		if s := stepNamed(t, steps, tc.name); s.At != tc.at || s.Area != tc.area {
			t.Errorf("step %s at %s in %s, want %s in %s", tc.name, s.At, s.Area, tc.at, tc.area)
		}
	}
	if s := stepNamed(t, steps, "fault-c"); s.OMS != nil || len(stepsWithOMS(steps, cc.name)) > 0 {
		t.Errorf("fault-c must be seen by meters only, got OMS posts")
	}
}

func stepsWithOMS(steps []Step, area string) []Step {
	var out []Step
	for _, s := range steps {
		if s.OMS != nil && slices.Contains(s.OMS.Areas, area) {
			out = append(out, s)
		}
	}
	return out
}

// TestRunScenario plays the whole demo 100× faster against a real broker and
// a fake API, and checks what came out.
func TestRunScenario(t *testing.T) {
	broker, rec := startBroker(t)
	api, posts := startAPI(t)
	f := testFleet()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := Options{Broker: broker, API: api, Token: "tok", Fleet: f, Interval: 10 * time.Second,
		Scenario: true, Duration: 160 * time.Second, TimeScale: 0.01}
	if err := Run(ctx, o, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run did not finish within its Duration")
	}
	steps := Scenario(f)
	out := decode(t, rec.all())
	if len(out.readings) == 0 || len(out.meterEv) == 0 || len(out.concEv) == 0 {
		t.Fatalf("published %d readings, %d meter events, %d concentrator events; want some of each",
			len(out.readings), len(out.meterEv), len(out.concEv))
	}
	checkFaultA(t, out, steps)
	checkBlip(t, out, stepNamed(t, steps, "blip-off"))
	checkBalance(t, out, stepNamed(t, steps, "balance-0").BalanceMeter)
	checkPosts(t, posts(), newCast(f).area(0).name)
}

// published is what the broker saw, decoded.
type published struct {
	readings []readingMsg // in order
	meterEv  []meterEventMsg
	concEv   []concEventMsg
}

var topicRE = regexp.MustCompile(`^ami/(C-\d{4})/(?:readings|event|(\w+)/event)$`)

func decode(t *testing.T, msgs []message) published {
	t.Helper()
	var p published
	for _, m := range msgs {
		sm := topicRE.FindStringSubmatch(m.topic)
		if sm == nil {
			t.Errorf("unexpected topic %q", m.topic)
			continue
		}
		var err error
		switch {
		case strings.HasSuffix(m.topic, "/readings"):
			var rs []readingMsg
			err = json.Unmarshal(m.payload, &rs)
			for _, r := range rs {
				checkReading(t, r)
			}
			p.readings = append(p.readings, rs...)
		case sm[2] != "":
			var e meterEventMsg
			err = json.Unmarshal(m.payload, &e)
			if e.Meter != sm[2] {
				t.Errorf("%s carries meter %q", m.topic, e.Meter)
			}
			p.meterEv = append(p.meterEv, e)
		default:
			var e concEventMsg
			err = json.Unmarshal(m.payload, &e)
			if e.Concentrator != sm[1] {
				t.Errorf("%s carries concentrator %q", m.topic, e.Concentrator)
			}
			p.concEv = append(p.concEv, e)
		}
		if err != nil {
			t.Errorf("%s: payload %s: %v", m.topic, m.payload, err)
		}
	}
	return p
}

func checkReading(t *testing.T, r readingMsg) {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, r.TS)
	if _, off := ts.Zone(); err != nil || off != 8*3600 || !strings.HasSuffix(r.TS, "+08:00") {
		t.Errorf("reading ts %q is not RFC 3339 at +08:00", r.TS)
	}
	if r.Meter == "" || r.KWh <= 0 || r.Voltage < 215 || r.Voltage > 225 || r.PowerKW <= 0 || r.Current <= 0 {
		t.Errorf("implausible reading %+v", r)
	}
}

func tsOf(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("bad ts %q: %v", s, err)
	}
	return ts
}

// checkFaultA: the last gasps, silence while dark, the first power_on without
// the nested meters, and the nested meters back last.
func checkFaultA(t *testing.T, p published, steps []Step) {
	t.Helper()
	fault, restore, nested := stepNamed(t, steps, "fault-a"), stepNamed(t, steps, "restore-a"), stepNamed(t, steps, "nested-on")
	var off, on []concEventMsg
	for _, e := range p.concEv {
		if e.Concentrator == fault.Concentrator {
			if e.Type == "power_off" {
				off = append(off, e)
			} else {
				on = append(on, e)
			}
		}
	}
	if len(off) != 1 || len(on) != 1 {
		t.Fatalf("concentrator %s: %d power_off, %d power_on; want 1 each", fault.Concentrator, len(off), len(on))
	}
	tOff, tOn := tsOf(t, off[0].TS), tsOf(t, on[0].TS)
	if d := tOn.Sub(tOff); d != restore.At-fault.At {
		t.Errorf("area A dark for %s, want %s", d, restore.At-fault.At)
	}
	firstOn := map[string]time.Time{}
	for _, e := range p.meterEv {
		if e.Type == "power_off" && slices.Contains(nested.Signals, e.Meter) && !tsOf(t, e.TS).Before(tOff) {
			t.Errorf("nested meter %s power_off at %s, want before the concentrator's at %s", e.Meter, e.TS, off[0].TS)
		}
		if e.Type == "power_on" && slices.Contains(fault.Dark, e.Meter) {
			if _, ok := firstOn[e.Meter]; !ok {
				firstOn[e.Meter] = tsOf(t, e.TS)
			}
		}
	}
	for _, m := range nested.Signals {
		if got := firstOn[m]; !got.Equal(tOff.Add(nested.At - fault.At)) {
			t.Errorf("nested meter %s first power_on at %s, want at the nested repair %s", m, got, tOff.Add(nested.At-fault.At))
		}
	}
	if n := len(firstOn); n != len(fault.Dark) {
		t.Errorf("%d of area A's %d meters sent power_on", n, len(fault.Dark))
	}
	for _, r := range p.readings {
		ts := tsOf(t, r.TS)
		until := tOn
		if slices.Contains(nested.Signals, r.Meter) {
			until = tOff.Add(nested.At - fault.At)
		}
		if slices.Contains(fault.Dark, r.Meter) && ts.After(tOff) && ts.Before(until) {
			t.Errorf("dark meter %s read at %s", r.Meter, r.TS)
		}
	}
}

func checkBlip(t *testing.T, p published, blip Step) {
	t.Helper()
	for _, m := range blip.Signals {
		var types []string
		var stamps []time.Time
		for _, e := range p.meterEv {
			if e.Meter == m {
				types = append(types, e.Type)
				stamps = append(stamps, tsOf(t, e.TS))
			}
		}
		if !slices.Equal(types, []string{"power_off", "power_on"}) {
			t.Errorf("blip meter %s events %v, want power_off then power_on", m, types)
			continue
		}
		if d := stamps[1].Sub(stamps[0]); d != 10*time.Second {
			t.Errorf("blip meter %s back after %s, want 10s", m, d)
		}
	}
}

func checkBalance(t *testing.T, p published, m string) {
	t.Helper()
	var seq []float64
	for _, r := range p.readings {
		if r.Meter != m {
			continue
		}
		if r.Balance == nil {
			t.Fatalf("prepaid meter %s reads without balance", m)
		}
		if len(seq) == 0 || seq[len(seq)-1] != *r.Balance {
			seq = append(seq, *r.Balance)
		}
	}
	want := []float64{45, 38, 31, 27.5, 20, 12.5, 5, -1}
	if !slices.Equal(seq, want) {
		t.Errorf("prepaid meter %s balances %v, want %v", m, seq, want)
	}
}

var outageIDRE = regexp.MustCompile(`^OMS-\d{8}-\d{4}$`)

func checkPosts(t *testing.T, posts []apiPost, areaA string) {
	t.Helper()
	var statuses, ids []string
	var etrs []time.Time
	var arrears int
	for _, p := range posts {
		if p.auth != "Bearer tok" {
			t.Errorf("POST %s with Authorization %q", p.path, p.auth)
		}
		switch p.path {
		case omsPath:
			statuses = append(statuses, p.body["status"].(string))
			etrs = append(etrs, tsOf(t, p.body["etr"].(string)))
			id, _ := p.body["outage_id"].(string)
			if !outageIDRE.MatchString(id) {
				t.Errorf("outage_id %q, want OMS-<yyyymmdd>-<nnnn>", id)
			}
			ids = append(ids, id)
			if areas, _ := p.body["areas"].([]any); len(areas) != 1 || areas[0] != areaA || p.body["kind"] != "fault" {
				t.Errorf("OMS post %v, want a fault in %s", p.body, areaA)
			}
		case billingPath:
			if p.body["type"] == "arrears" && p.body["amount"].(float64) > 0 && p.body["due"] != "" {
				arrears++
			}
		default:
			t.Errorf("POST to %s", p.path)
		}
	}
	if want := []string{"started", "etr_updated", "restored"}; !slices.Equal(statuses, want) {
		t.Fatalf("OMS statuses %v, want %v", statuses, want)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("OMS outage ids %v, want one outage", ids)
	}
	if d := etrs[1].Sub(etrs[0]); d != time.Hour {
		t.Errorf("etr_updated moves ETR by %s, want 1h", d)
	}
	if arrears != 1 {
		t.Errorf("%d arrears events posted, want 1", arrears)
	}
}

// TestRunReadingsOnly: without the scenario every meter reads each cycle and
// cancelling ctx ends Run cleanly.
func TestRunReadingsOnly(t *testing.T) {
	broker, rec := startBroker(t)
	f := testFleet()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Broker: broker, Fleet: f, Interval: 10 * time.Second, TimeScale: 0.01}, zerolog.Nop())
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.all()) < 3*6 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	p := decode(t, rec.all())
	if len(p.meterEv)+len(p.concEv) > 0 {
		t.Errorf("without the scenario, %d meter and %d concentrator events published", len(p.meterEv), len(p.concEv))
	}
	perMeter := map[string][]float64{}
	for _, r := range p.readings {
		perMeter[r.Meter] = append(perMeter[r.Meter], r.KWh)
	}
	if len(perMeter) != len(newPlant(f, 1).meters) {
		t.Errorf("%d meters read, want all %d", len(perMeter), len(newPlant(f, 1).meters))
	}
	for m, kwh := range perMeter {
		if !slices.IsSorted(kwh) {
			t.Errorf("meter %s kwh goes backwards: %v", m, kwh)
		}
	}
}

// TestPickSkipsPlaceholders: the demo's billing customer is one gridbell can
// text, not one whose number merely looks like a mobile (13900000000).
func TestPickSkipsPlaceholders(t *testing.T) {
	f := testFleet()
	c := newCast(f)
	var i int
	for i = range f.Customers {
		if cu := f.Customers[i]; !c.stage(cu.Area) && !cu.Prepaid {
			break
		}
	}
	f.Customers[i].Phone, f.Customers[i].Phone2, f.Customers[i].OptOut = "13900000000", "", false
	if got := c.arrearsAccount(); got == f.Customers[i].Account {
		t.Errorf("arrearsAccount() = %s, whose only number is a placeholder", got)
	}
}
