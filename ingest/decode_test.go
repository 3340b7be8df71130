package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

var testNow = time.Date(2026, 11, 26, 9, 0, 0, 0, time.FixedZone("CST", 8*3600))

func testLimits() Limits {
	var l Limits
	l.Defaults()
	return l
}

func TestDecodeMQTTValid(t *testing.T) {
	f := func(topic, payload string, check func(t *testing.T, evs []event.Event)) {
		t.Helper()
		evs, err := DecodeMQTT("ami", topic, []byte(payload), testNow, testLimits())
		if err != nil {
			t.Fatalf("DecodeMQTT(%q, %s) error %v", topic, payload, err)
		}
		check(t, evs)
	}
	f("ami/C-0101/330001234567/reading",
		`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1234.56,"voltage":221.3,"current":3.2,"power_kw":0.7,"balance":-45.20}`,
		func(t *testing.T, evs []event.Event) {
			r := evs[0].Reading
			if len(evs) != 1 || r == nil || r.Meter != "330001234567" || r.Concentrator != "C-0101" || r.KWh != 1234.56 ||
				*r.Voltage != 221.3 || *r.Current != 3.2 || *r.PowerKW != 0.7 || *r.Balance != -45.2 || evs[0].Late || evs[0].Source != "mqtt" {
				t.Fatalf("got %+v %+v", evs, r)
			}
			if !r.TS.Equal(time.Date(2026, 11, 26, 0, 15, 0, 0, time.UTC)) {
				t.Fatalf("ts %v", r.TS)
			}
		})
	f("ami/C-0101/readings",
		`[{"meter":"1","ts":"2026-11-26T08:15:00+08:00","kwh":1},{"meter":"2","ts":"2026-11-26T06:00:00+08:00","kwh":2}]`,
		func(t *testing.T, evs []event.Event) {
			if len(evs) != 2 || evs[1].Reading.Meter != "2" || evs[1].Reading.Concentrator != "C-0101" || evs[0].Reading.Voltage != nil {
				t.Fatalf("got %+v", evs)
			}
			if evs[0].Late || !evs[1].Late {
				t.Fatalf("late flags %v %v, want false true", evs[0].Late, evs[1].Late)
			}
		})
	f("ami/C-0101/readings", `{"meter":"1","ts":"2026-11-26T08:15:00Z","kwh":0}`, func(t *testing.T, evs []event.Event) {
		if len(evs) != 1 {
			t.Fatalf("got %+v", evs)
		}
	})
	f("ami/C-0101/readings", `[]`, func(t *testing.T, evs []event.Event) {
		if len(evs) != 0 {
			t.Fatalf("got %+v", evs)
		}
	})
	f("ami/C-0101/330001234567/event", `{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","type":"remote_trip"}`,
		func(t *testing.T, evs []event.Event) {
			if e := evs[0].Meter; e == nil || e.Type != event.RemoteTrip || e.Concentrator != "C-0101" {
				t.Fatalf("got %+v", evs)
			}
		})
	f("ami/C-0101/event", `{"concentrator":"C-0101","ts":"2026-11-26T08:15:00+08:00","type":"power_off"}`,
		func(t *testing.T, evs []event.Event) {
			if e := evs[0].Concentrator; e == nil || e.Type != event.PowerOff || e.Concentrator != "C-0101" {
				t.Fatalf("got %+v", evs)
			}
		})
	f("ami/C-0101/event", `{"ts":"2026-11-26T08:15:00+08:00","type":"power_on"}`, func(t *testing.T, evs []event.Event) {
		if evs[0].Concentrator.Concentrator != "C-0101" {
			t.Fatalf("got %+v", evs)
		}
	})
}

func TestDecodeMQTTRejects(t *testing.T) {
	f := func(topic, payload, reason string) {
		t.Helper()
		evs, err := DecodeMQTT("ami", topic, []byte(payload), testNow, testLimits())
		rejs := Rejections(err)
		if len(evs) != 0 || len(rejs) != 1 || rejs[0].Reason != reason {
			t.Fatalf("DecodeMQTT(%q, %s) = %v, %v; want one rejection %s", topic, payload, evs, err, reason)
		}
		if rejs[0].Detail == "" || len(rejs[0].Raw) != len(payload) {
			t.Fatalf("rejection without detail or raw: %+v", rejs[0])
		}
	}
	ok := `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00","kwh":1}`
	f("ami/C1", ok, ReasonBadTopic)
	f("ami/C1/M1/reading/x", ok, ReasonBadTopic)
	f("ami//M1/reading", ok, ReasonBadTopic)
	f("other/C1/M1/reading", ok, ReasonBadTopic)
	f("ami/C1/M1/status", ok, ReasonBadTopic)
	f("ami/C1/M1/reading", `not json`, ReasonBadJSON)
	f("ami/C1/M1/reading", `{"meter":`, ReasonBadJSON)
	f("ami/C1/M1/reading", `[`+ok+`]`, ReasonBadJSON)
	f("ami/C1/M1/reading", ``, ReasonBadJSON)
	f("ami/C1/M1/reading", `{"ts":"2026-11-26T08:15:00+08:00","kwh":1}`, ReasonMissing)
	f("ami/C1/M1/reading", `{"meter":"M1","kwh":1}`, ReasonMissing)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00"}`, ReasonMissing)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00","kwh":null}`, ReasonMissing)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00","kwh":"1"}`, ReasonBadField)
	f("ami/C1/M1/reading", `{"meter":12,"ts":"2026-11-26T08:15:00+08:00","kwh":1}`, ReasonBadField)
	f("ami/C1/M1/reading", `{"meter":"M2","ts":"2026-11-26T08:15:00+08:00","kwh":1}`, ReasonBadField)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00","kwh":-1}`, ReasonBadField)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00","kwh":1,"voltage":22130}`, ReasonBadField)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00","kwh":1,"current":-3}`, ReasonBadField)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"2026-11-26 08:15:00","kwh":1}`, ReasonBadTime)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"1764116100","kwh":1}`, ReasonBadTime)
	f("ami/C1/M1/reading", `{"meter":"M1","ts":"2026-11-28T08:15:00+08:00","kwh":1}`, ReasonFuture)
	f("ami/C1/M1/reading", `{"meter":"`+strings.Repeat("9", 65)+`","ts":"2026-11-26T08:15:00+08:00","kwh":1}`, ReasonBadField)
	f("ami/C1/M1/event", `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00","type":"exploded"}`, ReasonBadField)
	f("ami/C1/M1/event", `{"meter":"M1","ts":"2026-11-26T08:15:00+08:00"}`, ReasonMissing)
	f("ami/C1/event", `{"ts":"2026-11-26T08:15:00+08:00","type":"remote_trip"}`, ReasonBadField)
	f("ami/C1/event", `{"concentrator":"C2","ts":"2026-11-26T08:15:00+08:00","type":"power_off"}`, ReasonBadField)
	f("ami/C1/readings", `"x"`, ReasonBadJSON)

	lim := testLimits()
	lim.MaxPayload = 10
	_, err := DecodeMQTT("ami", "ami/C1/M1/reading", []byte(ok), testNow, lim)
	if r := Rejections(err); len(r) != 1 || r[0].Reason != ReasonTooLarge {
		t.Fatalf("oversized payload: %v, want too_large", err)
	}
}

// A concentrator's batch with bad elements keeps the good ones and names
// each bad one with its own bytes.
func TestDecodeMQTTPartialBatch(t *testing.T) {
	payload := `[{"meter":"1","ts":"2026-11-26T08:15:00+08:00","kwh":1},
		{"meter":"2","ts":"2026-11-26T08:15:00+08:00","kwh":"x"},
		17,
		{"meter":"4","ts":"2026-11-26T08:15:00+08:00","kwh":4},
		{"meter":"5","ts":"2026-11-30T08:15:00+08:00","kwh":5}]`
	evs, err := DecodeMQTT("ami", "ami/C1/readings", []byte(payload), testNow, testLimits())
	rejs := Rejections(err)
	if len(evs) != 2 || evs[0].Reading.Meter != "1" || evs[1].Reading.Meter != "4" {
		t.Fatalf("events %+v, want meters 1 and 4", evs)
	}
	want := []struct {
		idx    int
		reason string
	}{{1, ReasonBadField}, {2, ReasonBadJSON}, {4, ReasonFuture}}
	if len(rejs) != len(want) {
		t.Fatalf("rejections %+v, want %v", rejs, want)
	}
	for i, w := range want {
		if rejs[i].Index != w.idx || rejs[i].Reason != w.reason {
			t.Errorf("rejection %d = %d %s, want %d %s", i, rejs[i].Index, rejs[i].Reason, w.idx, w.reason)
		}
	}
	if string(rejs[1].Raw) != "17" {
		t.Errorf("raw of element 2 = %q, want 17", rejs[1].Raw)
	}
}

func TestDecodeOMS(t *testing.T) {
	good := `{"outage_id":"OMS-20261126-0042","kind":"fault","status":"started",
	 "areas":["TA-0101"],"feeders":["F-12"],"meters":[],
	 "start":"2026-11-26T09:02:00+08:00","etr":"2026-11-26T12:00:00+08:00",
	 "cause":"tree contact","updated_at":"2026-11-26T09:05:00+08:00"}`
	evs, err := DecodeOMS([]byte(good), testNow, testLimits())
	if err != nil || len(evs) != 1 {
		t.Fatalf("DecodeOMS = %v, %v", evs, err)
	}
	o := evs[0].Outage
	if o.OutageID != "OMS-20261126-0042" || o.Kind != "fault" || o.Status != "started" || o.Areas[0] != "TA-0101" ||
		o.Feeders[0] != "F-12" || o.Start == nil || o.ETR == nil || o.Cause != "tree contact" || o.UpdatedAt.IsZero() {
		t.Fatalf("outage %+v", o)
	}
	evs, err = DecodeOMS([]byte(`[`+good+`,{"outage_id":"X","kind":"planned","status":"cancelled","updated_at":"2026-11-26T08:00:00+08:00","start":null}]`), testNow, testLimits())
	if err != nil || len(evs) != 2 || evs[1].Outage.Start != nil {
		t.Fatalf("array: %v, %v", evs, err)
	}
	f := func(payload, reason string) {
		t.Helper()
		evs, err := DecodeOMS([]byte(payload), testNow, testLimits())
		if r := Rejections(err); len(evs) != 0 || len(r) != 1 || r[0].Reason != reason {
			t.Fatalf("DecodeOMS(%s) = %v, %v; want %s", payload, evs, err, reason)
		}
	}
	f(`{"kind":"fault","status":"started","updated_at":"2026-11-26T09:05:00+08:00"}`, ReasonMissing)
	f(`{"outage_id":"A","kind":"storm","status":"started","updated_at":"2026-11-26T09:05:00+08:00"}`, ReasonBadField)
	f(`{"outage_id":"A","kind":"fault","status":"begun","updated_at":"2026-11-26T09:05:00+08:00"}`, ReasonBadField)
	f(`{"outage_id":"A","kind":"fault","status":"started"}`, ReasonMissing)
	f(`{"outage_id":"A","kind":"fault","status":"started","updated_at":"2026-11-26T09:05:00+08:00","etr":"noon"}`, ReasonBadTime)
	f(`{"outage_id":"A","kind":"fault","status":"started","updated_at":"2026-11-29T09:05:00+08:00"}`, ReasonFuture)
	f(`{"outage_id":"A","kind":"fault","status":"started","updated_at":"2026-11-26T09:05:00+08:00","areas":"TA-1"}`, ReasonBadField)
	f(`{"outage_id":"A","kind":"fault","status":"started","updated_at":"2026-11-26T09:05:00+08:00","areas":[""]}`, ReasonBadField)
	f(`42`, ReasonBadJSON)
}

func TestDecodeBilling(t *testing.T) {
	good := []string{
		`{"account":"0100012345","type":"arrears","amount":236.40,"due":"2026-11-20","at":"2026-11-26T08:00:00+08:00"}`,
		`{"account":"0100012345","type":"balance","balance":-18.50,"at":"2026-11-26T08:00:00+08:00"}`,
		`{"account":"0100012345","type":"payment","amount":100.00,"balance":118.50,"at":"2026-11-26T08:00:00+08:00"}`,
		`{"account":"0100012345","type":"disconnect_scheduled","disconnect_at":"2026-11-27T08:00:00+08:00","at":"2026-11-26T08:00:00+08:00"}`,
	}
	evs, err := DecodeBilling([]byte("["+strings.Join(good, ",")+"]"), testNow, testLimits())
	if err != nil || len(evs) != 4 {
		t.Fatalf("DecodeBilling = %v, %v", evs, err)
	}
	if b := evs[0].Billing; b.Account != "0100012345" || *b.Amount != 236.4 || b.Due != "2026-11-20" {
		t.Fatalf("arrears %+v", b)
	}
	if b := evs[1].Billing; *b.Balance != -18.5 {
		t.Fatalf("balance %+v", b)
	}
	if b := evs[3].Billing; b.DisconnectAt == nil {
		t.Fatalf("disconnect %+v", b)
	}
	f := func(payload, reason string) {
		t.Helper()
		evs, err := DecodeBilling([]byte(payload), testNow, testLimits())
		if r := Rejections(err); len(evs) != 0 || len(r) != 1 || r[0].Reason != reason {
			t.Fatalf("DecodeBilling(%s) = %v, %v; want %s", payload, evs, err, reason)
		}
	}
	f(`{"type":"arrears","amount":1,"at":"2026-11-26T08:00:00+08:00"}`, ReasonMissing)
	f(`{"account":"A","type":"arrears","at":"2026-11-26T08:00:00+08:00"}`, ReasonMissing)
	f(`{"account":"A","type":"balance","at":"2026-11-26T08:00:00+08:00"}`, ReasonMissing)
	f(`{"account":"A","type":"disconnect_scheduled","at":"2026-11-26T08:00:00+08:00"}`, ReasonMissing)
	f(`{"account":"A","type":"refund","amount":1,"at":"2026-11-26T08:00:00+08:00"}`, ReasonBadField)
	f(`{"account":"A","type":"arrears","amount":-1,"at":"2026-11-26T08:00:00+08:00"}`, ReasonBadField)
	f(`{"account":"A","type":"arrears","amount":1,"due":"20/11/2026","at":"2026-11-26T08:00:00+08:00"}`, ReasonBadTime)
	f(`{"account":"A","type":"arrears","amount":1}`, ReasonMissing)
	f(`{"account":"A","type":"arrears","amount":1,"at":"2027-01-01T00:00:00Z"}`, ReasonFuture)
	f(`{"account":"A","type":"arrears","amount":"lots","at":"2026-11-26T08:00:00+08:00"}`, ReasonBadField)
}
