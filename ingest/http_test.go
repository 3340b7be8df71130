package ingest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridbell/gridbell/internal/store/storetest"
)

func TestHTTP(t *testing.T) {
	ctx := context.Background()
	dl, err := OpenDeadLetters(ctx, storetest.Open(t, "sqlite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	h := newRecorder()
	x := NewHTTP(Limits{MaxPayload: 4096}, h, dl, testLog(t))
	mux := http.NewServeMux()
	mux.Handle("/api/v1/oms/events", x.OMS())
	mux.Handle("/api/v1/billing/events", x.Billing())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	post := func(path, body string) (int, httpAnswer) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a httpAnswer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatalf("POST %s: answer is not JSON: %v", path, err)
		}
		return resp.StatusCode, a
	}
	late := newAcceptCounts(SourceHTTP).late
	lateBefore := testutil.ToFloat64(late)
	oldStamp := time.Now().Add(-3 * time.Hour).Format(time.RFC3339)
	oms := `{"outage_id":"OMS-1","kind":"fault","status":"started","areas":["TA-0101"],"updated_at":"` + oldStamp + `"}`
	if code, a := post("/api/v1/oms/events", oms); code != 202 || a.Accepted != 1 {
		t.Fatalf("one OMS event: %d %+v, want 202 accepted 1", code, a)
	}
	if n := testutil.ToFloat64(late) - lateBefore; n != 1 {
		t.Errorf("an event stamped 3 h ago counted %v times as late, want once (accepted and marked late)", n)
	}
	bill := `[{"account":"A1","type":"balance","balance":10,"at":"2026-11-26T08:00:00+08:00"},
		{"account":"A2","type":"balance","at":"2026-11-26T08:00:00+08:00"},
		{"account":"A3","type":"payment","amount":5,"at":"2026-11-26T08:00:00+08:00"}]`
	code, a := post("/api/v1/billing/events", bill)
	if code != 207 || a.Accepted != 2 || len(a.Rejected) != 1 || a.Rejected[0].Index != 1 || a.Rejected[0].Reason != ReasonMissing {
		t.Fatalf("billing with one bad element: %d %+v, want 207 (2 taken, element 1 refused)", code, a)
	}
	if code, a := post("/api/v1/billing/events", `{"account":`); code != 400 || a.Rejected[0].Reason != ReasonBadJSON {
		t.Fatalf("bad json: %d %+v", code, a)
	}
	if code, a := post("/api/v1/oms/events", "["+strings.Repeat(oms+",", 40)+oms+"]"); code != 413 || a.Rejected[0].Reason != ReasonTooLarge {
		t.Fatalf("too large: %d %+v", code, a)
	}
	h.fails = 1
	if code, _ := post("/api/v1/oms/events", oms); code != 503 {
		t.Fatalf("store down: %d, want 503", code)
	}
	if resp, _ := http.Get(srv.URL + "/api/v1/oms/events"); resp.StatusCode != 405 {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
	if h.distinct() != 3 {
		t.Fatalf("handled %d distinct events, want 3", h.distinct())
	}
	if n, _ := dl.Count(ctx); n != 3 {
		t.Fatalf("dead letters %d, want 3", n)
	}
	letters, _ := dl.List(ctx, 10)
	if letters[0].Source != SourceHTTP || letters[0].Topic != TopicHTTPBilling || !strings.Contains(letters[0].Reason, "element 1") {
		t.Fatalf("dead letter %+v", letters[0])
	}
	if code, a := post("/api/v1/billing/events", `[{"account":"A4","type":"balance","at":"2026-11-26T08:00:00+08:00"}]`); code != 400 || a.Accepted != 0 {
		t.Fatalf("billing with no good element: %d %+v, want 400", code, a)
	}
}
