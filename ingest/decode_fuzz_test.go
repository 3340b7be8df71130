package ingest

import (
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

var knownReasons = map[string]bool{ReasonTooLarge: true, ReasonBadJSON: true, ReasonBadTopic: true,
	ReasonMissing: true, ReasonBadField: true, ReasonBadTime: true, ReasonFuture: true}

// checkDecoded holds for every decoder output: rejections carry a known
// reason and detail, and accepted events are whole and not too far ahead.
func checkDecoded(t *testing.T, evs []event.Event, err error) {
	t.Helper()
	if err != nil {
		rejs := Rejections(err)
		if len(rejs) == 0 {
			t.Fatalf("error that is not a *DecodeError: %v", err)
		}
		for _, r := range rejs {
			if !knownReasons[r.Reason] || r.Detail == "" {
				t.Fatalf("rejection %+v", r)
			}
		}
	}
	horizon := testNow.Add(testLimits().MaxFuture)
	for _, e := range evs {
		var ts time.Time
		switch {
		case e.Reading != nil:
			if ts = e.Reading.TS; e.Reading.Meter == "" || e.Reading.KWh < 0 {
				t.Fatalf("reading %+v", e.Reading)
			}
		case e.Meter != nil:
			if ts = e.Meter.TS; e.Meter.Meter == "" || e.Meter.Type == "" {
				t.Fatalf("meter event %+v", e.Meter)
			}
		case e.Concentrator != nil:
			if ts = e.Concentrator.TS; e.Concentrator.Concentrator == "" {
				t.Fatalf("concentrator event %+v", e.Concentrator)
			}
		case e.Outage != nil:
			if ts = e.Outage.UpdatedAt; e.Outage.OutageID == "" || e.Outage.Kind == "" || e.Outage.Status == "" {
				t.Fatalf("outage %+v", e.Outage)
			}
		case e.Billing != nil:
			if ts = e.Billing.At; e.Billing.Account == "" || e.Billing.Type == "" {
				t.Fatalf("billing %+v", e.Billing)
			}
		default:
			t.Fatalf("empty event %+v", e)
		}
		if ts.IsZero() || ts.After(horizon) {
			t.Fatalf("event time %v of %+v", ts, e)
		}
	}
}

func FuzzDecodeMQTT(f *testing.F) {
	f.Add("ami/C1/M1/reading", []byte(`{"meter":"M1","ts":"2026-11-26T08:15:00+08:00","kwh":1.5,"voltage":220}`))
	f.Add("ami/C1/readings", []byte(`[{"meter":"M1","ts":"2026-11-26T08:15:00Z","kwh":1},{"meter":"M2","ts":"x","kwh":2},3]`))
	f.Add("ami/C1/M1/event", []byte(`{"meter":"M1","ts":"2026-11-26T08:15:00Z","type":"power_off"}`))
	f.Add("ami/C1/event", []byte(`{"concentrator":"C1","ts":"2026-11-26T08:15:00Z","type":"power_on"}`))
	f.Add("ami/C1/readings", []byte(`[{"meter":"M1","ts":"2026-11-26T08:15:00Z","kwh":1e400}]`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		evs, err := DecodeMQTT("ami", topic, payload, testNow, testLimits())
		checkDecoded(t, evs, err)
		for _, e := range evs {
			if e.Reading != nil && e.Reading.Concentrator == "" {
				t.Fatalf("reading without concentrator: %+v", e.Reading)
			}
		}
	})
}

func FuzzDecodeOMS(f *testing.F) {
	f.Add([]byte(`{"outage_id":"OMS-1","kind":"fault","status":"started","areas":["TA-0101"],"feeders":["F-12"],"meters":[],
	 "start":"2026-11-26T09:02:00+08:00","etr":"2026-11-26T12:00:00+08:00","cause":"tree","updated_at":"2026-11-26T09:05:00+08:00"}`))
	f.Add([]byte(`[{"outage_id":"A","kind":"planned","status":"scheduled","updated_at":"2026-11-26T09:05:00Z"},{"outage_id":1}]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		evs, err := DecodeOMS(payload, testNow, testLimits())
		checkDecoded(t, evs, err)
	})
}

func FuzzDecodeBilling(f *testing.F) {
	f.Add([]byte(`{"account":"0100012345","type":"arrears","amount":236.40,"due":"2026-11-20","at":"2026-11-26T08:00:00+08:00"}`))
	f.Add([]byte(`[{"account":"A","type":"disconnect_scheduled","disconnect_at":"2026-11-27T08:00:00Z","at":"2026-11-26T08:00:00Z"},{}]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		evs, err := DecodeBilling(payload, testNow, testLimits())
		checkDecoded(t, evs, err)
	})
}

// The decoders' view of time is the now they are given.
func TestDecodeUsesNow(t *testing.T) {
	later := testNow.Add(72 * time.Hour)
	payload := []byte(`{"meter":"M1","ts":"2026-11-28T08:15:00+08:00","kwh":1}`)
	if _, err := DecodeMQTT("ami", "ami/C1/M1/reading", payload, later, testLimits()); err != nil {
		t.Fatalf("a reading 2 days after testNow, decoded 3 days later: %v", err)
	}
}
