package ingest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gridbell/gridbell/internal/event"
)

func benchBatch(n int) []byte {
	type rd struct {
		Meter   string  `json:"meter"`
		TS      string  `json:"ts"`
		KWh     float64 `json:"kwh"`
		Voltage float64 `json:"voltage"`
		Current float64 `json:"current"`
		PowerKW float64 `json:"power_kw"`
		Balance float64 `json:"balance"`
	}
	batch := make([]rd, n)
	for i := range batch {
		batch[i] = rd{fmt.Sprintf("3300%08d", i), "2026-11-26T08:15:00+08:00", 1234.56 + float64(i), 221.3, 3.2, 0.7, 45.2}
	}
	b, _ := json.Marshal(batch)
	return b
}

// BenchmarkDecodeMQTT decodes a concentrator's batch of n full readings
// (all optional fields present); ns/reading and allocs/reading are per reading.
func BenchmarkDecodeMQTT(b *testing.B) {
	lim := testLimits()
	for _, n := range []int{1, 10, 100, 1000} {
		payload := benchBatch(n)
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				evs, err := DecodeMQTT("ami", "ami/C-0101/readings", payload, testNow, lim)
				if err != nil || len(evs) != n {
					b.Fatal(err)
				}
			}
			perReading(b, n)
		})
	}
	single := []byte(`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1234.56,"voltage":221.3,"current":3.2,"power_kw":0.7,"balance":45.20}`)
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(single)))
		for b.Loop() {
			if _, err := DecodeMQTT("ami", "ami/C-0101/330001234567/reading", single, testNow, lim); err != nil {
				b.Fatal(err)
			}
		}
		perReading(b, 1)
	})
}

// BenchmarkDecodeMQTTWorker decodes as an MQTT worker does: one
// readingDecoder and one event slice kept from message to message.
func BenchmarkDecodeMQTTWorker(b *testing.B) {
	lim := testLimits()
	run := func(name, topic string, payload []byte, n int) {
		b.Run(name, func(b *testing.B) {
			var d readingDecoder
			evs := make([]event.Event, 0, n)
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				var err error
				if evs, err = d.appendMQTT(evs[:0], "ami", topic, payload, testNow, lim); err != nil || len(evs) != n {
					b.Fatal(err)
				}
			}
			perReading(b, n)
		})
	}
	run("batch=100", "ami/C-0101/readings", benchBatch(100), 100)
	run("single", "ami/C-0101/330001234567/reading", []byte(`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","kwh":1234.56,"voltage":221.3,"current":3.2,"power_kw":0.7,"balance":45.20}`), 1)
}

// BenchmarkDecodeMQTTGeneral is the encoding/json decoder the fast one
// falls back to, on the same payloads: the cost of a payload it does not take.
func BenchmarkDecodeMQTTGeneral(b *testing.B) {
	lim := testLimits()
	for _, n := range []int{1, 100} {
		payload := benchBatch(n)
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if evs, err := decodeMQTTGeneral("ami", "ami/C-0101/readings", payload, testNow, lim); err != nil || len(evs) != n {
					b.Fatal(err)
				}
			}
			perReading(b, n)
		})
	}
}

func perReading(b *testing.B, n int) {
	elapsed := b.Elapsed()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*n), "ns/reading")
}

func BenchmarkDecodeOMS(b *testing.B) {
	payload := []byte(`{"outage_id":"OMS-20261126-0042","kind":"fault","status":"started",
	 "areas":["TA-0101"],"feeders":["F-12"],"meters":[],
	 "start":"2026-11-26T09:02:00+08:00","etr":"2026-11-26T12:00:00+08:00",
	 "cause":"tree contact","updated_at":"2026-11-26T09:05:00+08:00"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := DecodeOMS(payload, testNow, testLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInfluxLine is the cost Write adds per reading: one line of line
// protocol.
func BenchmarkInfluxLine(b *testing.B) {
	evs, _ := DecodeMQTT("ami", "ami/C-0101/readings", benchBatch(1), testNow, testLimits())
	r := *evs[0].Reading
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendLine(buf[:0], r, "TA-0101")
	}
	b.SetBytes(int64(len(buf)))
}
