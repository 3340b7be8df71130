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

// omsWith is a valid OMS event with extra (or replaced) fields.
func omsWith(extra string) string {
	return `{"outage_id":"OMS-1","kind":"fault","status":"started","updated_at":"2026-11-26T09:05:00+08:00",` +
		`"start":"2026-11-26T09:02:00+08:00"` + extra + `}`
}

func idList(prefix string, n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf(`"%s-%d"`, prefix, i)
	}
	return "[" + strings.Join(ids, ",") + "]"
}

// TestOMSLimits: scope lists, cause length and times an OMS event carries
// are bounded, each rejection with its own reason and a detail naming the
// limit.
func TestOMSLimits(t *testing.T) {
	f := func(payload, reason, detail string) {
		t.Helper()
		evs, err := DecodeOMS([]byte(payload), testNow, testLimits())
		r := Rejections(err)
		if len(evs) != 0 || len(r) != 1 || r[0].Reason != reason || !strings.Contains(r[0].Detail, detail) {
			t.Errorf("DecodeOMS(%.120s…) = %d events, %v; want %s with %q", payload, len(evs), err, reason, detail)
		}
	}
	f(omsWith(`,"areas":`+idList("TA", 20000)), ReasonOverLimit, "areas lists 20000 ids, over the limit of 2000 (ingest.max_areas)")
	f(omsWith(`,"feeders":`+idList("F", 501)), ReasonOverLimit, "ingest.max_feeders")
	f(omsWith(`,"meters":`+idList("M", 10001)), ReasonOverLimit, "ingest.max_meters")
	f(omsWith(`,"cause":"`+strings.Repeat("断", 3000)+`"`), ReasonOverLimit, "cause has 3000 characters, over the limit of 200")
	f(omsWith(`,"etr":"9999-12-31T00:00:00+08:00"`), ReasonFuture, "ingest.max_ahead")
	f(omsWith(`,"etr":"2026-11-26T08:00:00+08:00"`), ReasonBadTime, "before start")
	f(`{"outage_id":"OMS-1","kind":"planned","status":"scheduled","updated_at":"2026-11-26T09:05:00+08:00","start":"2027-06-01T09:00:00+08:00"}`,
		ReasonFuture, "ingest.max_ahead")
	f(omsWith(`,"areas":["TA-1"],"start":"1970-01-01T00:00:00Z"`), ReasonPast, "ingest.max_past")
	f(`{"outage_id":"OMS-1","kind":"fault","status":"started","updated_at":"1999-01-01T00:00:00Z"}`, ReasonPast, "in the past")
	f(`{"outage_id":"OMS\n1","kind":"fault","status":"started","updated_at":"2026-11-26T09:05:00+08:00"}`, ReasonBadField, "control characters")
	f(omsWith(`,"areas":["TA\u0000"]`), ReasonBadField, "control characters")
	f(omsWith(`,"type":"`+strings.Repeat("x", 1<<20)+`"`), ReasonTooLarge, "over the limit")
	f(`{"outage_id":"A","kind":"`+strings.Repeat("k", 100000)+`","status":"started","updated_at":"2026-11-26T09:05:00+08:00"}`, ReasonBadField, "…")

	// At the limits, and with a cause on several lines, the event passes.
	evs, err := DecodeOMS([]byte(omsWith(`,"areas":`+idList("TA", 2000)+`,"etr":"2027-02-20T00:00:00+08:00","cause":"cable\n\tfault`+strings.Repeat("!", 188)+`"`)), testNow, testLimits())
	if err != nil || len(evs) != 1 || len(evs[0].Outage.Areas) != 2000 || !strings.HasPrefix(evs[0].Outage.Cause, "cable fault!") {
		t.Fatalf("event at the limits: %v, %v", evs, err)
	}
	lim := testLimits()
	lim.MaxAreas, lim.MaxCause = 20000, 5000
	if _, err := DecodeOMS([]byte(omsWith(`,"areas":`+idList("TA", 20000)+`,"cause":"`+strings.Repeat("断", 3000)+`"`)), testNow, lim); err != nil {
		t.Errorf("limits raised in config: %v", err)
	}
	for _, reason := range []string{ReasonOverLimit, ReasonPast} {
		if rej := reject(0, reason, "%s", strings.Repeat("é", 1000)); len(rej.Detail) > maxDetail+len("…") {
			t.Errorf("detail of %d bytes", len(rej.Detail))
		}
	}
}

func TestBillingLimits(t *testing.T) {
	f := func(payload, reason string) {
		t.Helper()
		evs, err := DecodeBilling([]byte(payload), testNow, testLimits())
		if r := Rejections(err); len(evs) != 0 || len(r) != 1 || r[0].Reason != reason {
			t.Errorf("DecodeBilling(%s) = %v, %v; want %s", payload, evs, err, reason)
		}
	}
	at := `,"at":"2026-11-26T08:00:00+08:00"}`
	f(`{"account":"A","type":"arrears","amount":1,"due":"9999-12-31"`+at, ReasonFuture)
	f(`{"account":"A","type":"arrears","amount":1,"due":"1900-01-01"`+at, ReasonPast)
	f(`{"account":"A","type":"arrears","amount":1e300`+at, ReasonBadField)
	f(`{"account":"A","type":"arrears","amount":1e400`+at, ReasonBadField)
	f(`{"account":"A","type":"balance","balance":-1e12`+at, ReasonBadField)
	f(`{"account":"A","type":"disconnect_scheduled","disconnect_at":"9999-12-31T00:00:00Z"`+at, ReasonFuture)
	f(`{"account":"=1+1\r","type":"balance","balance":1`+at, ReasonBadField)
}

// TestDeadLetterPerMessage: one MQTT batch of 20,000 bad readings is one
// dead-letter row (one INSERT) with the count, the 20,000 rejections are
// counted, the good readings of the batch are handed on, and the letter
// replays as a batch once the limit that rejected it is raised.
func TestDeadLetterPerMessage(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, "sqlite")
	dl, err := OpenDeadLetters(ctx, db, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	broker := embedded(t)
	cfg := testMQTTConfig(broker)
	h := newRecorder()
	run := startMQTT(t, cfg, h, dl, nil)
	defer run.stop(t)

	// A: 20,000 empty objects (60 KB) between two good readings; B: 500
	// readings stamped too far ahead.
	future := time.Now().Add(30 * time.Hour).UTC().Format(time.RFC3339)
	now := time.Now().UTC().Format(time.RFC3339)
	a := `[{"meter":"OK1","ts":"` + now + `","kwh":1}` + strings.Repeat(",{}", 20000) + `,{"meter":"OK2","ts":"` + now + `","kwh":2}]`
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, `,{"meter":"M%d","ts":"%s","kwh":1}`, i, future)
	}
	counter := func(reason string) float64 {
		return testutil.ToFloat64(rejectedCounter(SourceMQTT, reason))
	}
	miss0 := counter(ReasonMissing)
	pub := publisher(t, broker)
	publish(t, pub, cfg.TopicPrefix+"/C1/readings", a)
	publish(t, pub, cfg.TopicPrefix+"/C2/readings", "["+b.String()[1:]+"]")

	waitFor(t, 20*time.Second, "two dead letters", func() bool { n, _ := dl.Count(ctx); return n >= 2 })
	waitFor(t, 10*time.Second, "the good readings", func() bool { return h.total() >= 2 })
	list, err := dl.List(ctx, 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %d letters, %v; want 1 per message", len(list), err)
	}
	if list[0].Topic == cfg.TopicPrefix+"/C2/readings" {
		list[0], list[1] = list[1], list[0]
	}
	la, lb := list[0], list[1]
	if la.Elements != 20000 || !strings.HasPrefix(la.Reason, "missing_field: 20000 elements rejected (missing_field 20000); first: element 1:") ||
		la.Truncated() || len(la.Raw) != 2+20000*3-1 {
		t.Errorf("letter A: %d elements, reason %q, %d of %d bytes", la.Elements, la.Reason, len(la.Raw), la.Size)
	}
	if got := counter(ReasonMissing) - miss0; got != 20000 {
		t.Errorf("missing_field counter rose by %v, want 20000", got)
	}
	if h.total() != 2 {
		t.Errorf("handed %d events, want the 2 good readings", h.total())
	}

	// B is still too far ahead: it stays. With max_future 48h it replays whole.
	if n, err := dl.Replay(ctx, []int64{lb.ID}, h); err != nil || n != 0 {
		t.Fatalf("Replay under the same limits = %d, %v; want 0", n, err)
	}
	wide, _ := OpenDeadLetters(ctx, db, Limits{MaxFuture: 48 * time.Hour})
	wide.SetRoutes(Routes{MQTTPrefix: cfg.TopicPrefix})
	h2 := newRecorder()
	if n, err := wide.Replay(ctx, []int64{lb.ID}, h2); err != nil || n != 1 || h2.total() != 500 {
		t.Fatalf("Replay with max_future 48h = %d, %v, %d events; want 1 letter, 500 events", n, err, h2.total())
	}
	if n, _ := dl.Count(ctx); n != 1 {
		t.Errorf("%d letters left after the replay, want A's only", n)
	}
}
