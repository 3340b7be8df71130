package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// TestRequestMetrics: requests are counted by the pattern that matched, not
// the raw path, so the series stay few whatever clients ask for.
func TestRequestMetrics(t *testing.T) {
	notReady := errors.New("mqtt subscriptions not acknowledged")
	var isReady atomic.Bool // the server's goroutines read it
	ready := func() error {
		if isReady.Load() {
			return nil
		}
		return notReady
	}
	srv := httptest.NewServer(New(Config{}, AuthConfig{}, Deps{Ready: ready}, zerolog.Nop()).Handler())
	defer srv.Close()
	byID := httpRequests.WithLabelValues("GET", "/api/v1/outages/{id}", "404")
	unmatched := httpRequests.WithLabelValues("GET", "unmatched", "404")
	odd := httpRequests.WithLabelValues("other", "unmatched", "405")
	id0, un0, odd0 := testutil.ToFloat64(byID), testutil.ToFloat64(unmatched), testutil.ToFloat64(odd)
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/outages/OMS-1"},
		{"GET", "/api/v1/outages/OMS-2"},
		{"GET", "/no/such/page"},
		{"BREW", "/healthz"},
	} {
		r, _ := http.NewRequest(req.method, srv.URL+req.path, nil)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := testutil.ToFloat64(byID) - id0; got != 2 {
		t.Errorf("requests to two outage ids counted %v times under /api/v1/outages/{id}, want 2", got)
	}
	if got := testutil.ToFloat64(unmatched) - un0; got != 1 {
		t.Errorf("an unknown path counted %v times as unmatched, want 1", got)
	}
	if got := testutil.ToFloat64(odd) - odd0; got != 1 {
		t.Errorf("method BREW counted %v times as other, want 1", got)
	}
	if metricsCount := testutil.CollectAndCount(httpDuration); metricsCount == 0 {
		t.Error("no request duration series")
	}

	for _, tt := range []struct {
		ready bool
		want  float64
	}{{false, 0}, {true, 1}} {
		isReady.Store(tt.ready)
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := testutil.ToFloat64(readyGauge); got != tt.want {
			t.Errorf("gridbell_ready = %v when ready is %v, want %v", got, tt.ready, tt.want)
		}
	}
}
