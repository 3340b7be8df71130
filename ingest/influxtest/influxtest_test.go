package influxtest

import (
	"net/http"
	"strings"
	"testing"
)

func TestStart(t *testing.T) {
	s := Start(t)
	resp, err := http.Post(s.URL+"/write?db="+Database+"&precision=ms", "text/plain",
		strings.NewReader("reading,meter=M1 kwh=1 1764116100000\nreading,meter=M2 kwh=2 1764116100000\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write: %s", resp.Status)
	}
	if n, err := s.Count("reading"); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
	s.Stop()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count("reading"); err != nil || n != 2 {
		t.Fatalf("Count after restart = %d, %v; want 2", n, err)
	}
}
