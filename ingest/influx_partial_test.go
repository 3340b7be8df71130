package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridbell/gridbell/ingest/influxtest"
)

// A batch InfluxDB takes only in part (here a field type conflict in one
// shard) counts its refused points as dropped and the rest as written, and
// is not retried.
func TestInfluxPartialWrite(t *testing.T) {
	srv := influxtest.Start(t)
	run := startInflux(t, srv.URL, t.TempDir(), 1<<30, nil)
	defer run.stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Someone else made kwh a string in the week of 2025-11-26.
	if err := run.s.write(ctx, "reading,meter=X kwh=\"text\" 1764115200000\n"); err != nil {
		t.Fatal(err)
	}
	w0, d0 := testutil.ToFloat64(run.s.written), testutil.ToFloat64(run.s.dropped)
	batch := "reading,meter=Y kwh=1.5 1764115200000\n" + // conflicts
		"reading,meter=Z kwh=2.5 1780272000000\n" + // 2026-06-01: another shard
		"reading,meter=W kwh=3.5 1780272000000\n"
	err := run.s.write(ctx, batch)
	if err == nil || !permanent(err) {
		t.Fatalf("write = %v, want a permanent partial write", err)
	}
	run.s.settle(3, err)
	if w, d := testutil.ToFloat64(run.s.written)-w0, testutil.ToFloat64(run.s.dropped)-d0; w != 2 || d != 1 {
		t.Fatalf("written %v, dropped %v; want 2 and 1", w, d)
	}
}
