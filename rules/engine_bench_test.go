package rules

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// meterEventBytes is the size of a meter event's MQTT payload, so SetBytes
// reports the payload rate the rules keep up with.
const meterEventBytes = len(`{"meter":"330001234567","ts":"2026-11-26T08:15:00+08:00","type":"power_off"}`)

// genDir imports n generated meters into the real registry (on a store of
// its own): perArea to an area, one account each, 25 areas to a grid.
func genDir(tb testing.TB, n, perArea int) Directory {
	tb.Helper()
	var csv bytes.Buffer
	csv.WriteString("account,meter,concentrator,area,grid,manager,manager_phone,class,phone\n")
	for k := 0; k < n; k++ {
		a := k / perArea
		fmt.Fprintf(&csv, "A%08d,M%08d,C-%05d,TA-%05d,G%03d,mgr,+8613900000000,resident,+86138%08d\n", k, k, a, a, a/25, k)
	}
	db := storetest.Open(tb, "sqlite")
	reg, err := contacts.Open(context.Background(), db, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	var rejects bytes.Buffer
	if sum, err := reg.Import(context.Background(), &csv, &rejects); err != nil || sum.Rejected > 0 {
		tb.Fatalf("contacts import: %v, %d rejected:\n%s", err, sum.Rejected, rejects.String())
	}
	return reg
}

func benchEngine(b *testing.B, dir Directory, clk *clock.Fake) *Engine {
	db := storetest.Open(b, "sqlite")
	openSink(b, db)
	e, err := New(Config{}, db, dir, tableSink{}, clk, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func processBatch(b *testing.B, e *Engine, evs []event.Event) {
	r := &request{evs: evs, done: make(chan error, 1)}
	e.process([]*request{r})
	if err := <-r.done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkHandle applies and commits batches of last gasps and power-ons
// (momentary blips: state changes, stored decisions, no intents).
func BenchmarkHandle(b *testing.B) {
	const meters = 100_000
	dir := genDir(b, meters, 100)
	for _, size := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			clk := clock.NewFake(t0)
			e := benchEngine(b, dir, clk)
			evs := make([]event.Event, size)
			b.ReportAllocs()
			b.SetBytes(int64(size * meterEventBytes))
			k := 0
			for i := 0; b.Loop(); i++ {
				typ := event.PowerOff
				if i%2 == 1 {
					typ = event.PowerOn
				}
				ts := t0.Add(time.Duration(i) * time.Millisecond)
				for j := range evs {
					evs[j] = event.Event{Meter: &event.MeterEvent{Meter: fmt.Sprintf("M%08d", (k+j)%meters), TS: ts, Type: typ}}
				}
				if i%2 == 1 {
					k += size
				}
				processBatch(b, e, evs)
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkDecide closes n momentary windows at once: n meters of n/100
// areas confirmed dark, the areas inferred out, an outage intent for each
// customer, all committed in one batch.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("meters=%d", n), func(b *testing.B) {
			dir := genDir(b, n*2, 100)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				clk := clock.NewFake(t0)
				e := benchEngine(b, dir, clk)
				var evs []event.Event
				for k := 0; k < n*2; k++ {
					if k%100 < 60 && k/100%2 == 0 { // 60% of every other area
						evs = append(evs, meterEv(fmt.Sprintf("M%08d", k), event.PowerOff, 0))
					}
				}
				processBatch(b, e, evs)
				clk.Set(t0.Add(61 * time.Second))
				b.StartTimer()
				processBatch(b, e, nil)
			}
		})
	}
}

// BenchmarkVerification answers the verification of one outage of n meters
// after the OMS said restored: half heard from again, half still dark.
func BenchmarkVerification(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("meters=%d", n), func(b *testing.B) {
			clk := clock.NewFake(t0)
			e := benchEngine(b, genDir(b, n, 100), clk)
			var areas []string
			for a := 0; a < n/100; a++ {
				areas = append(areas, fmt.Sprintf("TA-%05d", a))
			}
			start := t0
			evs := []event.Event{{Outage: &event.OMSOutage{OutageID: "O", Kind: "fault", Status: "started", Areas: areas, Start: &start, UpdatedAt: t0}}}
			for k := 0; k < n; k++ {
				if k%5 < 2 {
					evs = append(evs, meterEv(fmt.Sprintf("M%08d", k), event.PowerOff, time.Second))
				}
			}
			processBatch(b, e, evs)
			clk.Set(t0.Add(2 * time.Minute))
			processBatch(b, e, nil)
			// the OMS says restored; half the meters are heard from again
			evs = []event.Event{{Outage: &event.OMSOutage{OutageID: "O", Kind: "fault", Status: "restored", Areas: areas, UpdatedAt: t0.Add(time.Hour)}}}
			for k := 0; k < n; k += 2 {
				evs = append(evs, readingEv(fmt.Sprintf("M%08d", k), time.Hour+time.Minute, 100))
			}
			clk.Set(t0.Add(time.Hour + time.Minute))
			processBatch(b, e, evs)
			b.ReportAllocs()
			for b.Loop() {
				v, _ := e.Verification("O")
				if len(v.Restored) != n/2 || len(v.Dark) != n/2 {
					b.Fatalf("restored %d, dark %d, want %d each", len(v.Restored), len(v.Dark), n/2)
				}
			}
		})
	}
}
