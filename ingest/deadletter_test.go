package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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

// TestDeadLetterCaps (issue 21): the table keeps at most dead_letter_max
// letters and dead_letter_max_bytes raw bytes; the oldest go first, and
// each one dropped is counted.
func TestDeadLetterCaps(t *testing.T) {
	for _, backend := range storetest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			lim := testLimits()
			lim.DeadLetterRaw, lim.DeadLetterMax, lim.DeadLetterMaxBytes = 100, 20, 1500
			dl, err := OpenDeadLetters(ctx, storetest.Open(t, backend), lim)
			if err != nil {
				t.Fatal(err)
			}
			dropped0 := testutil.ToFloat64(deadLettersDropped)
			put := func(i, size int) {
				raw := []byte(fmt.Sprintf("%04d", i) + strings.Repeat("x", size-4))
				if err := dl.Put(ctx, SourceMQTT, "ami/C1/M1/reading", "bad_json: test", raw); err != nil {
					t.Fatal(err)
				}
			}
			check := func(what string, puts int) {
				t.Helper()
				list, err := dl.List(ctx, 1000)
				if err != nil {
					t.Fatal(err)
				}
				kept := 0
				for _, l := range list {
					kept += len(l.Raw)
				}
				if len(list) > lim.DeadLetterMax || int64(kept) > lim.DeadLetterMaxBytes {
					t.Errorf("%s: %d letters of %d bytes kept, want at most %d and %d", what, len(list), kept, lim.DeadLetterMax, lim.DeadLetterMaxBytes)
				}
				if last := string(list[len(list)-1].Raw[:4]); last != fmt.Sprintf("%04d", puts-1) {
					t.Errorf("%s: newest kept is %s, want %04d", what, last, puts-1)
				}
				for i := 1; i < len(list); i++ {
					if string(list[i].Raw[:4]) <= string(list[i-1].Raw[:4]) {
						t.Errorf("%s: not the oldest dropped: %s after %s", what, list[i].Raw[:4], list[i-1].Raw[:4])
					}
				}
				if got := testutil.ToFloat64(deadLettersDropped) - dropped0; int(got) != puts-len(list) {
					t.Errorf("%s: %v counted dropped, want %d", what, got, puts-len(list))
				}
			}
			for i := range 50 { // small letters: the count cap acts
				put(i, 10)
			}
			check("50 small letters", 50)
			for i := 50; i < 80; i++ { // letters cut to 100 bytes: the bytes cap acts
				put(i, 5000)
			}
			check("30 large letters", 80)
		})
	}
}
