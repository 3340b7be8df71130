package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gridbell/gridbell/internal/event"
)

// TestForwardKeepsAMetersOrder: every event of a meter, and its
// concentrator's own events, are forwarded to one partition of the meter
// topic, in the order forwarded, whatever else is forwarded beside them
// and by whichever forwarder (instance): the key depends on the event only.
func TestForwardKeepsAMetersOrder(t *testing.T) {
	c := kafkaCluster(t)
	cfg := KafkaConfig{Brokers: c.ListenAddrs()}
	ctx := context.Background()
	const topic = "fwd.meter-events"
	parts, err := EnsureMeterTopic(ctx, cfg, topic, DefaultMeterPartitions)
	if err != nil {
		t.Fatal(err)
	}
	var fwds []*Forwarder
	for range 2 {
		f, err := NewForwarder(cfg, topic)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fwds = append(fwds, f)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// 20 concentrators of 5 meters; each round, every meter's event, and
	// every concentrator's, goes through one of the two forwarders.
	const rounds = 6
	sent := 0
	for r := range rounds {
		ts := t0.Add(time.Duration(r) * time.Second)
		for k := range 2 {
			var evs []event.Event
			for cn := k; cn < 20; cn += 2 {
				conc := fmt.Sprintf("C-%02d", cn)
				if r%3 == 2 {
					evs = append(evs, event.Event{Concentrator: &event.ConcentratorEvent{Concentrator: conc, TS: ts, Type: event.PowerOff}})
				}
				for m := range 5 {
					meter := fmt.Sprintf("M%02d%d", cn, m)
					if r%2 == 0 {
						evs = append(evs, event.Event{Reading: &event.Reading{Meter: meter, Concentrator: conc, TS: ts, KWh: float64(r)}})
					} else {
						evs = append(evs, event.Event{Meter: &event.MeterEvent{Meter: meter, Concentrator: conc, TS: ts, Type: event.PowerOn}})
					}
				}
			}
			if err := fwds[(r+k)%2].Handle(ctx, evs); err != nil {
				t.Fatal(err)
			}
			sent += len(evs)
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	partOf := map[string]int32{}   // meter or concentrator → partition
	last := map[string]time.Time{} // → newest event time read
	used := map[int32]bool{}
	got := 0
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for got < sent {
		fs := cl.PollFetches(fctx)
		if fctx.Err() != nil {
			t.Fatalf("read %d of %d forwarded events", got, sent)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			var evs []event.Event
			if err := json.Unmarshal(rec.Value, &evs); err != nil {
				t.Fatal(err)
			}
			used[rec.Partition] = true
			for _, ev := range evs {
				got++
				var id, conc string
				var ts time.Time
				switch {
				case ev.Reading != nil:
					id, conc, ts = ev.Reading.Meter, ev.Reading.Concentrator, ev.Reading.TS
				case ev.Meter != nil:
					id, conc, ts = ev.Meter.Meter, ev.Meter.Concentrator, ev.Meter.TS
				case ev.Concentrator != nil:
					id, conc, ts = ev.Concentrator.Concentrator, ev.Concentrator.Concentrator, ev.Concentrator.TS
				}
				for _, k := range []string{id, "conc " + conc} {
					if p, ok := partOf[k]; ok && p != rec.Partition {
						t.Errorf("%s's events in partitions %d and %d", k, p, rec.Partition)
					}
					partOf[k] = rec.Partition
				}
				if ts.Before(last[id]) {
					t.Errorf("%s: an event of %s read after one of %s", id, ts, last[id])
				}
				last[id] = ts
			}
		})
	}
	if len(used) < 2 || parts != DefaultMeterPartitions {
		t.Errorf("the events went to %d of %d partitions, want them spread", len(used), parts)
	}
}
