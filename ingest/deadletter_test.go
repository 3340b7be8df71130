package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/store/storetest"
)

func TestDeadLetters(t *testing.T) {
	for _, backend := range storetest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, backend)
			lim := testLimits()
			lim.DeadLetterRaw = 16
			dl, err := OpenDeadLetters(ctx, db, lim)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := OpenDeadLetters(ctx, db, lim); err != nil {
				t.Fatalf("second open: %v", err)
			}
			binary := []byte{0xff, 0x00, 0xfe}
			long := []byte(strings.Repeat("x", 40))
			fixable := []byte(`{"meter":"M1","ts":"2026-11-26T08:15:00Z","kwh":1}`)
			lim.DeadLetterRaw = 1 << 10
			dl2, _ := OpenDeadLetters(ctx, db, lim) // a larger cut for the fixable one
			for _, p := range []struct {
				dl    *DeadLetters
				topic string
				raw   []byte
			}{{dl, "ami/C1/M1/reading", binary}, {dl, "ami/C1/M1/reading", long}, {dl2, "ami/C1/M1/reading", fixable}} {
				if err := p.dl.Put(ctx, SourceMQTT, p.topic, "bad_json: test", p.raw); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := dl.Count(ctx); err != nil || n != 3 {
				t.Fatalf("Count = %d, %v; want 3", n, err)
			}
			list, err := dl.List(ctx, 10)
			if err != nil || len(list) != 3 {
				t.Fatalf("List = %v, %v", list, err)
			}
			if string(list[0].Raw) != string(binary) || list[0].Source != "mqtt" || list[0].Reason != "bad_json: test" || list[0].ReceivedAt.IsZero() {
				t.Errorf("letter 0 = %+v", list[0])
			}
			if len(list[1].Raw) != 16 || list[1].Size != 40 || !list[1].Truncated() {
				t.Errorf("letter 1 not cut to 16 of 40 bytes: %+v", list[1])
			}
			h := newRecorder()
			n, err := dl.Replay(ctx, []int64{list[0].ID, list[1].ID, list[2].ID}, h)
			if err != nil || n != 1 {
				t.Fatalf("Replay = %d, %v; want 1 replayed", n, err)
			}
			if len(h.evs) != 1 || h.evs[0].Source != SourceReplay || h.evs[0].Reading.Meter != "M1" {
				t.Fatalf("handed %+v", h.evs)
			}
			if n, _ := dl.Count(ctx); n != 2 {
				t.Fatalf("Count after replay = %d, want the 2 still bad", n)
			}
		})
	}
}

// Replay picks the decoder by source and topic, with the routes SetRoutes
// gives it.
func TestDeadLetterReplayRoutes(t *testing.T) {
	ctx := context.Background()
	dl, err := OpenDeadLetters(ctx, storetest.Open(t, "sqlite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	dl.SetRoutes(Routes{MQTTPrefix: "site/ami", OMSTopic: "oms.custom"})
	oms := []byte(`{"outage_id":"OMS-1","kind":"fault","status":"started","updated_at":"2026-11-26T09:05:00+08:00"}`)
	bill := []byte(`{"account":"A1","type":"balance","balance":1,"at":"2026-11-26T08:00:00+08:00"}`)
	put := func(source, topic string, raw []byte) {
		if err := dl.Put(ctx, source, topic, "test", raw); err != nil {
			t.Fatal(err)
		}
	}
	put(SourceKafka, "oms.custom", oms)
	put(SourceKafka, "billing.accounts", bill)
	put(SourceHTTP, TopicHTTPOMS, oms)
	put(SourceHTTP, TopicHTTPBilling, bill)
	put(SourceMQTT, "site/ami/C1/event", []byte(`{"ts":"2026-11-26T08:00:00+08:00","type":"power_off"}`))
	put(SourceKafka, "unknown.topic", oms)
	list, _ := dl.List(ctx, 10)
	var ids []int64
	for _, l := range list {
		ids = append(ids, l.ID)
	}
	h := newRecorder()
	n, err := dl.Replay(ctx, ids, h)
	if err != nil || n != 5 {
		t.Fatalf("Replay = %d, %v; want 5", n, err)
	}
	evs := h.events()
	if evs[0].Outage == nil || evs[1].Billing == nil || evs[2].Outage == nil || evs[3].Billing == nil ||
		evs[4].Concentrator == nil || evs[4].Concentrator.Concentrator != "C1" {
		t.Fatalf("replayed %+v", evs)
	}
	if left, _ := dl.List(ctx, 10); len(left) != 1 || left[0].Topic != "unknown.topic" {
		t.Fatalf("left %+v, want the unknown topic", left)
	}
}

// TestDeadLettersPrune: letters received before the cut go, in batches.
func TestDeadLettersPrune(t *testing.T) {
	ctx := context.Background()
	dl, err := OpenDeadLetters(ctx, storetest.Open(t, "sqlite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := dl.Put(ctx, SourceMQTT, "ami/x", "bad_json: x", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := dl.Prune(ctx, time.Now().Add(-time.Hour), 2); err != nil || n != 0 {
		t.Errorf("prune before an hour ago = %d, %v; want 0", n, err)
	}
	if n, err := dl.Prune(ctx, time.Now().Add(time.Hour), 2); err != nil || n != 3 {
		t.Errorf("prune of everything = %d, %v; want 3", n, err)
	}
	if n, _ := dl.Count(ctx); n != 0 {
		t.Errorf("%d letters left", n)
	}
}
