package rules

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// BenchmarkCopyRefresh is what a copy (an instance in distributed mode that
// does not run the rules) spends keeping up: the rules on one engine commit
// a batch that changes 1,000 meters, and a second engine on the same
// PostgreSQL store refreshes its copy. GRIDBELL_TEST_COPY_METERS sets the
// fleet (default 100,000; the sizing figures use 1,000,000). Only the
// refresh is timed: ns/op is its wall time, cpu-s/op its CPU (the whole
// process's, PostgreSQL's not included), B/op what it allocates (with
// what the store's connections allocate meanwhile).
func BenchmarkCopyRefresh(b *testing.B) {
	n := 100_000
	if s := os.Getenv("GRIDBELL_TEST_COPY_METERS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	dir := genDir(b, n, 200)
	db := storetest.Open(b, "postgres")
	openSink(b, db)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	if _, err := New(Config{}, db, dir, tableSink{}, clk, zerolog.Nop()); err != nil { // migrates
		b.Fatal(err)
	}
	// every meter seen powered, checkpointed
	if _, err := db.ExecContext(ctx, `INSERT INTO rules_meters (meter, st, flags, since, seen, last_ts, relay_ts, due, ver, on_ts)
		SELECT 'M' || lpad(g::text, 8, '0'), 1, 0, $1, $1, $1, 0, 0, 1, 0 FROM generate_series(0, $2 - 1) g`, t0.UnixNano(), n); err != nil {
		b.Fatal(err)
	}
	leader, err := New(Config{}, db, dir, tableSink{}, clk, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	// a few outages in the store: 1% of the meters dark in whole areas
	var evs []event.Event
	for k := 0; k < n/100; k++ {
		evs = append(evs, meterEv(fmt.Sprintf("M%08d", k), event.PowerOff, 0))
	}
	processBatch(b, leader, evs)
	clk.Set(t0.Add(61 * time.Second))
	processBatch(b, leader, nil)
	copy, err := New(Config{}, db, dir, tableSink{}, clk, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	evs = make([]event.Event, 1000)
	var cpu time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		typ := event.PowerOff
		if i%2 == 1 {
			typ = event.PowerOn
		}
		for j := range evs {
			evs[j] = meterEv(fmt.Sprintf("M%08d", n/2+(i/2*len(evs)+j)%(n/2)), typ, time.Minute+time.Duration(i)*time.Millisecond)
		}
		processBatch(b, leader, evs)
		runtime.GC()
		c0 := cpuTime()
		b.StartTimer()
		if err := copy.Refresh(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += cpuTime() - c0
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	if got, want := dump(copy), dump(leader); got != want {
		b.Errorf("copy differs from the rules:\n got %.2000s\nwant %.2000s", got, want)
	}
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
