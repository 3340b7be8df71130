package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridbell/gridbell/ingest/influxtest"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// e2eServers returns Mosquitto's address, a fresh influxd and a store of
// dead letters.
func e2eServers(t *testing.T) (broker string, srv *influxtest.Server, dl *DeadLetters) {
	t.Helper()
	dl, err := OpenDeadLetters(context.Background(), storetest.Open(t, "sqlite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return mosquitto(t), influxtest.Start(t), dl
}

// End to end over Mosquitto and a real influxd: batch and single readings,
// meter and concentrator events, a redelivered duplicate. Every event reaches
// the Handler and every reading is in InfluxDB exactly once.
func TestEndToEnd(t *testing.T) {
	broker, srv, dl := e2eServers(t)
	dir := mapDirectory{}
	for m := range 50 {
		dir[fmt.Sprintf("M%d", m)] = "TA-1"
	}
	sink := startInflux(t, srv.URL, t.TempDir(), 1<<30, dir)
	defer sink.stop(t)

	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	h := newRecorder()
	m := NewMQTT(cfg, Limits{}, h, sink.s, dl, dir, testLog(t))
	defer goRun(m.Run).stop(t)
	waitFor(t, 10*time.Second, "subscription", m.Ready)

	pub := publisher(t, broker)
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	type rd struct {
		Meter string  `json:"meter"`
		TS    string  `json:"ts"`
		KWh   float64 `json:"kwh"`
	}
	readings := 0
	for c := range 5 { // 5 concentrators × 20 batches × 10 readings
		for b := range 20 {
			var batch []rd
			for k := range 10 {
				batch = append(batch, rd{fmt.Sprintf("M%d", c*10+k), base.Add(time.Duration(b) * time.Minute).Format(time.RFC3339), float64(b)})
			}
			payload, _ := json.Marshal(batch)
			publish(t, pub, fmt.Sprintf("%s/C%d/readings", cfg.TopicPrefix, c), string(payload))
			readings += len(batch)
		}
	}
	for i := range 200 { // single readings, some of unknown meters
		meter := fmt.Sprintf("M%d", 40+i%20)
		r, _ := json.Marshal(rd{meter, base.Add(time.Duration(30+i/20) * time.Minute).Format(time.RFC3339), float64(i)})
		publish(t, pub, fmt.Sprintf("%s/C9/%s/reading", cfg.TopicPrefix, meter), string(r))
		readings++
		if i == 7 { // a head-end resend
			publish(t, pub, fmt.Sprintf("%s/C9/%s/reading", cfg.TopicPrefix, meter), string(r))
		}
	}
	ts := base.Format(time.RFC3339)
	publish(t, pub, cfg.TopicPrefix+"/C1/M10/event", `{"meter":"M10","ts":"`+ts+`","type":"power_off"}`)
	publish(t, pub, cfg.TopicPrefix+"/C1/event", `{"concentrator":"C1","ts":"`+ts+`","type":"power_off"}`)

	waitFor(t, 20*time.Second, "every event at the Handler", func() bool { return h.distinct() == readings+2 })
	waitCount(t, srv, readings)
	series, err := srv.Query(`SELECT COUNT("kwh") FROM "reading" GROUP BY "meter", "area"`)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		area   string
		points float64
	}
	wants := map[string]want{"M47": {"TA-1", 30}, "M55": {"", 10}} // M47: 20 in batches, 10 single, one of them resent
	for _, s := range series {
		if w, ok := wants[s.Tags["meter"]]; ok && (s.Values[0][1] != w.points || s.Tags["area"] != w.area) {
			t.Errorf("meter %s has %v points in area %q, want %v in %q", s.Tags["meter"], s.Values[0][1], s.Tags["area"], w.points, w.area)
		}
	}
	if n, _ := dl.Count(context.Background()); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// lookupHandler answers for a meter as the rules do once they applied a
// reading (Reading.Found, .Area), or leaves it unanswered.
type lookupHandler struct {
	*recorder
	known map[string]string // meter → area the "rules" found
	none  map[string]bool   // meters left unanswered
}

func (h lookupHandler) Handle(ctx context.Context, evs []event.Event) error {
	for i := range evs {
		r := evs[i].Reading
		switch {
		case r == nil || h.none[r.Meter]:
		case h.known[r.Meter] != "":
			r.Found, r.Area = event.LookupKnown, h.known[r.Meter]
		default:
			r.Found = event.LookupUnknown
		}
	}
	return h.recorder.Handle(ctx, evs)
}

// TestLookupHandedBack: InfluxDB's area tag and the unknown-meter count
// come from the Handler's answer when it gave one (the rules', which looked
// the meter up already), and from the Directory only when it did not.
func TestLookupHandedBack(t *testing.T) {
	broker, srv, dl := e2eServers(t)
	// The Directory disagrees with the "rules" on purpose: its answer shows
	// wherever it was asked again.
	dir := mapDirectory{"K1": "TA-DIR", "U1": "TA-DIR", "N1": "TA-DIR"}
	sink := startInflux(t, srv.URL, t.TempDir(), 1<<30, dir)
	defer sink.stop(t)
	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	h := lookupHandler{recorder: newRecorder(), known: map[string]string{"K1": "TA-RULES"}, none: map[string]bool{"N1": true, "N2": true}}
	m := NewMQTT(cfg, Limits{}, h, sink.s, dl, dir, testLog(t))
	defer goRun(m.Run).stop(t)
	waitFor(t, 10*time.Second, "subscription", m.Ready)
	u0 := testutil.ToFloat64(unknownReadings)
	pub := publisher(t, broker)
	ts := time.Now().UTC().Truncate(time.Second).Add(-time.Minute).Format(time.RFC3339)
	for _, meter := range []string{"K1", "U1", "N1", "N2"} {
		publish(t, pub, cfg.TopicPrefix+"/C1/"+meter+"/reading", `{"meter":"`+meter+`","ts":"`+ts+`","kwh":1}`)
	}
	waitCount(t, srv, 4)
	series, err := srv.Query(`SELECT COUNT("kwh") FROM "reading" GROUP BY "meter", "area"`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range series {
		got[s.Tags["meter"]] = s.Tags["area"]
	}
	want := map[string]string{"K1": "TA-RULES", "U1": "", "N1": "TA-DIR", "N2": ""}
	if !maps.Equal(got, want) {
		t.Errorf("area tags %v, want %v", got, want)
	}
	if d := testutil.ToFloat64(unknownReadings) - u0; d != 2 { // U1 by the handler, N2 by the Directory
		t.Errorf("unknown-meter readings counted %v, want 2", d)
	}
}
