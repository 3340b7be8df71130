package rules

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/cluster"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// BenchmarkFencedReadings is distributed mode's plain readings on
// PostgreSQL: batches of 5,000 readings of a 200,000-meter fleet with
// their meter-topic offsets, under the fence, an idle tick (checkpoint)
// after every fourth batch. It reports what the stored offsets cost with
// the readings' effects written beside them (hold): meter log rows and
// checkpointed meters per second of readings.
func BenchmarkFencedReadings(b *testing.B) {
	const meters, size = 200_000, 5000
	dir := genDir(b, meters, 100)
	db := storetest.Open(b, "postgres")
	openSink(b, db)
	ctx := context.Background()
	if err := cluster.Migrate(ctx, db); err != nil {
		b.Fatal(err)
	}
	if _, err := store.AcquireLease(ctx, db, cluster.RulesLease, "bench", time.Hour); err != nil {
		b.Fatal(err)
	}
	clk := clock.NewFake(t0)
	e, err := New(Config{}, db, dir, tableSink{}, clk, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	e.SetFence(cluster.Fence("bench", "bench"))
	evs := make([]event.Event, size)
	var off int64
	k := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ts := t0.Add(time.Duration(i) * time.Second)
		clk.Set(ts)
		for j := range evs {
			evs[j] = event.Event{Reading: &event.Reading{Meter: fmt.Sprintf("M%08d", (k+j)%meters), TS: ts, KWh: float64(i)}}
		}
		k += size
		off++
		r := &request{evs: evs, offsets: map[int32]int64{int32(i % 12): off}, done: make(chan error, 1)}
		e.process([]*request{r})
		if err := <-r.done; err != nil {
			b.Fatal(err)
		}
		if i%4 == 3 {
			e.process(nil)
		}
	}
	var logRows, checkpointed int
	db.QueryRow(`SELECT COUNT(*) FROM rules_meter_log`).Scan(&logRows)
	db.QueryRow(`SELECT COUNT(*) FROM rules_meters`).Scan(&checkpointed)
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "readings/s")
	b.ReportMetric(float64(checkpointed), "meters_checkpointed")
	b.ReportMetric(float64(logRows), "log_rows_left")
}
