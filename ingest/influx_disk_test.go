//go:build faults

package ingest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/ingest/influxtest"
	"github.com/gridbell/gridbell/internal/faults"
)

// logLines returns the lines of l that hold substr.
func logLines(l *lockedBuffer, substr string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// spoolLines counts the readings in the spool's files, and their bytes.
func spoolLines(t *testing.T, dir string) (lines int, size int64, files []string) {
	t.Helper()
	files, _ = filepath.Glob(filepath.Join(dir, "spool", "*.lp"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines += bytes.Count(b, []byte{'\n'})
		size += int64(len(b))
	}
	return lines, size, files
}

// TestFaultInfluxDiskFull: with InfluxDB down and data_dir on a full tmpfs,
// the readings held in memory at shutdown cannot be spooled: every one is
// counted (lost at shutdown, and dropped) and logged in one line with the
// count. With room again, a shutdown spools them all, and InfluxDB gets
// every one once it is back. Spool files removed by hand leave the queue,
// and the spool gauge follows the disk.
func TestFaultInfluxDiskFull(t *testing.T) {
	srv := influxtest.Start(t)
	data := faults.SmallDisk(t, 8<<20)
	srv.Stop()
	cfg := InfluxConfig{URL: srv.URL, Bucket: influxtest.Database, BatchSize: 200, FlushEvery: 20 * time.Millisecond, SpoolMaxSize: 1 << 30}
	start := func(log *lockedBuffer) (*InfluxSink, func() error) {
		s, err := NewInflux(cfg, data, nil, zerolog.New(log))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return s, func() error { cancel(); return <-done }
	}
	next := 0
	write := func(s *InfluxSink, n int) {
		for range n {
			s.Write(testReading(next))
			next++
		}
	}
	const n = 1000 // 5 batches: they wait in memory while InfluxDB is down

	// The disk is full: a shutdown loses what memory holds, counted.
	free := faults.Fill(t, data)
	lost0, drop0 := testutil.ToFloat64(influxLostAtShutdown), testutil.ToFloat64(influxDropped)
	log := &lockedBuffer{}
	s, stop := start(log)
	write(s, n)
	time.Sleep(200 * time.Millisecond) // sealed into batches, a sender retrying the first
	err := stop()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(n)) {
		t.Errorf("Run on a full disk = %v, want an error naming %d readings", err, n)
	}
	lost := testutil.ToFloat64(influxLostAtShutdown) - lost0
	dropped := testutil.ToFloat64(influxDropped) - drop0
	if lost != n || dropped != n {
		t.Errorf("lost at shutdown %v, dropped %v; want %d each", lost, dropped, n)
	}
	if lines := logLines(log, "could not be spooled at shutdown"); len(lines) != 1 || !strings.Contains(lines[0], fmt.Sprintf(`"readings":%d`, n)) {
		t.Errorf("shutdown log lines %q, want one with the count %d", lines, n)
	}
	if got, _, _ := spoolLines(t, data); got != 0 {
		t.Errorf("%d readings spooled on a full disk", got)
	}

	// Room again: a shutdown spools everything in memory.
	free()
	first := next
	s, stop = start(&lockedBuffer{})
	write(s, n)
	time.Sleep(200 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("Run with room: %v", err)
	}
	if got := testutil.ToFloat64(influxLostAtShutdown) - lost0; got != n {
		t.Errorf("lost at shutdown with room: %v more", got-n)
	}
	spooled, _, files := spoolLines(t, data)
	if spooled != n || len(files) < 3 {
		t.Fatalf("spool holds %d readings in %d files, want %d in 5", spooled, len(files), n)
	}

	// The two newest files removed by hand (to free the disk), while the
	// senders retry the oldest: the queue lets them go and the gauge
	// follows the disk.
	log = &lockedBuffer{}
	s, stop = start(log)
	time.Sleep(200 * time.Millisecond) // the senders hold the oldest files
	for _, f := range files[len(files)-2:] {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	left, size, _ := spoolLines(t, data)
	waitFor(t, 3*spoolCheckEvery, "the spool gauge to follow the disk", func() bool {
		return testutil.ToFloat64(influxSpool) == float64(size)
	})
	if lines := logLines(log, "removed from the disk"); len(lines) != 1 || !strings.Contains(lines[0], `"batches":2`) {
		t.Errorf("log lines %q, want one naming 2 batches", lines)
	}

	// InfluxDB back: what is left in the spool is written, once.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, srv, left)
	waitFor(t, 10*time.Second, "an empty spool", func() bool { return testutil.ToFloat64(influxSpool) == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("full disk: %d of %d readings in memory lost at shutdown, counted and logged once; with room: %d of %d spooled, %d written after 2 files were removed by hand (first reading %d)",
		int(lost), n, spooled, n, left, first)
}
