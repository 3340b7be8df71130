package ingest

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A write leaves gzipped with its header and decompresses to what was
// written; other requests pass as they are.
func TestGzipTransport(t *testing.T) {
	type seen struct{ enc, body string }
	got := make(chan seen, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("not gzip: %v", err)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		got <- seen{r.Header.Get("Content-Encoding"), string(b)}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := &http.Client{Transport: gzipTransport{next: http.DefaultTransport}}
	lines := strings.Repeat("reading,meter=330001234567 kwh=1234.56 1764116100000\n", 5000)
	for _, path := range []string{"/api/v2/write?org=o&bucket=b", "/api/v2/query"} {
		resp, err := c.Post(srv.URL+path, "text/plain", strings.NewReader(lines))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		s := <-got
		wantEnc := map[bool]string{true: "gzip", false: ""}[strings.Contains(path, "write")]
		if s.enc != wantEnc || s.body != lines {
			t.Fatalf("POST %s arrived with Content-Encoding %q and %d bytes, want %q and the %d written", path, s.enc, len(s.body), wantEnc, len(lines))
		}
	}
}
