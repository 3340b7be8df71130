package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/metrics"
)

// The API's metrics (docs/metrics.md). Labels are bounded: the route is
// the pattern that matched ("unmatched" for none), never the raw path, and
// an unusual method is "other".
var (
	httpRequests = metrics.Default.CounterVec("gridbell_http_requests_total",
		"HTTP requests answered, by method, route pattern and status code.", "method", "route", "code")
	httpDuration = metrics.Default.HistogramVec("gridbell_http_request_duration_seconds",
		"Time to answer an HTTP request, by method and route pattern.", metrics.CallBuckets, "method", "route")
	readyGauge = metrics.Default.Gauge("gridbell_ready",
		"1 when /readyz answers 200 (store open, contacts loaded, MQTT subscribed, Kafka group joined), else 0; as of the scrape.")
)

// instrument counts and times every request mux answers.
func instrument(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		mux.ServeHTTP(sw, r) // a ServeMux sets r.Pattern to the pattern that matched
		method, route := methodLabel(r.Method), routeLabel(r.Pattern)
		httpRequests.WithLabelValues(method, route, strconv.Itoa(sw.code())).Inc()
		httpDuration.WithLabelValues(method, route).Observe(time.Since(t0).Seconds())
	})
}

// routeLabel is a mux pattern without its method: "/api/v1/outages/{id}".
func routeLabel(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// promLog passes client_golang's errors (a collector that failed) to zerolog.
type promLog struct{ log zerolog.Logger }

func (l promLog) Println(v ...any) { l.log.Warn().Msg(strings.TrimSpace(fmt.Sprintln(v...))) }
