package ingest

import (
	"fmt"
	"math"
	"testing"

	"github.com/gridbell/gridbell/internal/event"
)

// fastTopics are the topics FuzzFastReadings decodes under: both reading
// forms, and one other form the fast decoder must leave alone.
var fastTopics = []string{"ami/C-0101/330001234567/reading", "ami/C-0101/readings", "ami/C-0101/330001234567/event"}

// The fast decoder and encoding/json agree on every payload: the same
// events, and the same rejections (reason, element, detail).
func FuzzFastReadings(f *testing.F) {
	for _, p := range fastSeeds {
		for i := range fastTopics {
			f.Add(uint8(i), []byte(p))
		}
	}
	f.Fuzz(func(t *testing.T, form uint8, payload []byte) {
		topic := fastTopics[int(form)%len(fastTopics)]
		want, wantErr := decodeMQTTGeneral("ami", topic, payload, testNow, testLimits())
		got, gotErr := DecodeMQTT("ami", topic, payload, testNow, testLimits())
		if msg := sameDecoded(got, gotErr, want, wantErr); msg != "" {
			t.Fatalf("topic %s, payload %q: fast and general decoders differ: %s", topic, payload, msg)
		}
	})
}

// fastSeeds are plain payloads the fast decoder takes and near misses it
// must hand to encoding/json (also the seed corpus of FuzzFastReadings).
var fastSeeds = []string{
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1234.56,"voltage":221.3,"current":3.2,"power_kw":0.7,"balance":45.20}`,
	`{"meter":"330001234567","ts":"2026-11-26T00:15:00Z","kwh":0}`,
	` { "kwh" : -0.0 , "ts" : "2026-11-26T08:15:00.123456789+05:30" , "meter" : "330001234567" } `,
	`[{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1},{"meter":"330001234568","ts":"2026-11-26T08:15:00+08:00","kwh":2.5,"balance":-3}]`,
	`[]`, `[ ]`, `{}`, `[{}]`, `null`, `[null]`, `"x"`, `[1]`, ``,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1e3}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":01}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1.}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1234567890123456.5}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":0.1234567890123456789}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":-1}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1,"voltage":null}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1,"kwh":2}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","KWH":1}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1,"extra":true}`,
	`{"meter":"33000\u00312345","ts":"2026-11-26T08:15:00+08:00","kwh":1}`,
	`{"meter":"330001234567","ts":"2026-11-26 08:15:00+08:00","kwh":1}`,
	`{"meter":"330001234567","ts":"2026-02-30T08:15:00+08:00","kwh":1}`,
	`{"meter":"330001234567","ts":"2030-11-26T08:15:00+08:00","kwh":1}`,
	`{"meter":"330001234567","ts":"2024-11-26T08:15:00+08:00","kwh":1}`,
	`{"meter":"330001234567","ts":"2026-11-26T06:15:00+08:00","kwh":1}`,
	`{"meter":"330001234568","ts":"2026-11-26T08:15:00+08:00","kwh":1}`,
	`{"meter":"","ts":"2026-11-26T08:15:00+08:00","kwh":1}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1}x`,
	`[{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1},]`,
	`[{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1},{"meter":"M2","ts":"x","kwh":2}]`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1,"voltage":1001}`,
	`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1,"current":"3"}`,
	"{\"meter\":\"3300\xff1234567\",\"ts\":\"2026-11-26T08:15:00+08:00\",\"kwh\":1}",
}

// sameDecoded returns "" when two decoder results agree, else how they differ.
func sameDecoded(got []event.Event, gotErr error, want []event.Event, wantErr error) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d events, want %d", len(got), len(want))
	}
	for i := range got {
		if msg := sameEvent(got[i], want[i]); msg != "" {
			return fmt.Sprintf("event %d: %s", i, msg)
		}
	}
	if (gotErr == nil) != (wantErr == nil) {
		return fmt.Sprintf("error %v, want %v", gotErr, wantErr)
	}
	gr, wr := Rejections(gotErr), Rejections(wantErr)
	if len(gr) != len(wr) {
		return fmt.Sprintf("%d rejections, want %d", len(gr), len(wr))
	}
	for i := range gr {
		if gr[i].Index != wr[i].Index || gr[i].Reason != wr[i].Reason || gr[i].Detail != wr[i].Detail || string(gr[i].Raw) != string(wr[i].Raw) {
			return fmt.Sprintf("rejection %+v, want %+v", gr[i], wr[i])
		}
	}
	return ""
}

func sameEvent(a, b event.Event) string {
	if a.Source != b.Source || !a.Received.Equal(b.Received) || a.Late != b.Late || (a.Reading == nil) != (b.Reading == nil) ||
		a.Meter != nil || a.Concentrator != nil || a.Outage != nil || a.Billing != nil {
		return fmt.Sprintf("%+v, want %+v", a, b)
	}
	if a.Reading == nil {
		return "" // the general decoder made both: not what this test compares
	}
	r, s := a.Reading, b.Reading
	an, ao := r.TS.Zone()
	bn, bo := s.TS.Zone()
	switch {
	case r.Meter != s.Meter || r.Concentrator != s.Concentrator || !r.TS.Equal(s.TS) || an != bn || ao != bo ||
		r.TS.Location().String() != s.TS.Location().String() || !sameFloat(&r.KWh, &s.KWh):
	case !sameFloat(r.Voltage, s.Voltage) || !sameFloat(r.Current, s.Current) || !sameFloat(r.PowerKW, s.PowerKW) || !sameFloat(r.Balance, s.Balance):
	default:
		return ""
	}
	return fmt.Sprintf("reading %+v, want %+v", *r, *s)
}

// sameFloat compares bit for bit: -0 is not 0.
func sameFloat(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return math.Float64bits(*a) == math.Float64bits(*b)
}

// The fast decoder takes the plain payloads of the contract (it could
// otherwise hand everything to encoding/json and still pass the fuzz test),
// and gives what encoding/json gives.
func TestFastReadingsTakesPlainPayloads(t *testing.T) {
	v := validator{now: testNow, lim: testLimits()}
	check := func(payload string, arrays bool, topicMeter string) {
		t.Helper()
		var d readingDecoder
		got, ok := d.appendReadings(nil, []byte(payload), arrays, &v, "C-0101", topicMeter)
		if !ok {
			t.Fatalf("appendReadings(%s) handed a plain payload to encoding/json", payload)
		}
		topic := "ami/C-0101/readings"
		if topicMeter != "" {
			topic = "ami/C-0101/" + topicMeter + "/reading"
		}
		want, err := decodeMQTTGeneral("ami", topic, []byte(payload), testNow, testLimits())
		if msg := sameDecoded(got, nil, want, err); msg != "" {
			t.Fatalf("appendReadings(%s): %s", payload, msg)
		}
	}
	check(fastSeeds[0], false, "330001234567")
	check(fastSeeds[1], false, "330001234567")
	check(fastSeeds[2], false, "330001234567")
	check(fastSeeds[0], true, "")
	check(fastSeeds[3], true, "")
	check(`[]`, true, "")
	check(string(benchBatch(100)), true, "")
}

// The fast decoder allocates per batch, not per reading: a 100-reading
// batch costs the meter ids' string and a share of the cells' chunk, and a
// single reading (its meter id taken from the topic) a share of the chunk.
func TestFastReadingsAllocations(t *testing.T) {
	lim := testLimits()
	batch := benchBatch(100)
	single := []byte(fastSeeds[0])
	var d readingDecoder
	evs := make([]event.Event, 0, 100)
	batchAllocs := testing.AllocsPerRun(50, func() {
		evs, _ = d.appendMQTT(evs[:0], "ami", "ami/C-0101/readings", batch, testNow, lim)
	})
	singleAllocs := testing.AllocsPerRun(640, func() {
		evs, _ = d.appendMQTT(evs[:0], "ami", "ami/C-0101/330001234567/reading", single, testNow, lim)
	})
	// 100 readings: one string, two 64-cell chunks at most.
	if batchAllocs > 3 || singleAllocs > 0.1 {
		t.Fatalf("allocations: %.2f per 100-reading batch (want ≤ 3), %.3f per single reading (want ≤ 0.1)", batchAllocs, singleAllocs)
	}
}

// A decoder's cells are never handed out twice: readings decoded earlier
// keep their values while the decoder goes on.
func TestFastReadingsKeepEarlierReadings(t *testing.T) {
	var d readingDecoder
	var evs []event.Event
	for i := range 3 * readingChunk {
		p := fmt.Sprintf(`{"meter":"M%d","ts":"2026-11-26T08:15:00+08:00","kwh":%d,"balance":%d}`, i, i, -i)
		var err error
		if evs, err = d.appendMQTT(evs, "ami", fmt.Sprintf("ami/C1/M%d/reading", i), []byte(p), testNow, testLimits()); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range evs {
		r := e.Reading
		if r.Meter != fmt.Sprintf("M%d", i) || r.KWh != float64(i) || r.Balance == nil || *r.Balance != -float64(i) || r.Voltage != nil {
			t.Fatalf("reading %d became %+v", i, r)
		}
	}
}
