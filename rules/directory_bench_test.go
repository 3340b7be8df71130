package rules

import (
	"fmt"
	"testing"

	"github.com/gridbell/gridbell/internal/clock"
)

// BenchmarkRefreshDirectory re-reads the cached facts of every meter and
// the members of every area, as the writer does after a contacts reload.
// It holds the engine's lock: its time is how long events wait.
func BenchmarkRefreshDirectory(b *testing.B) {
	for _, meters := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("meters=%d", meters), func(b *testing.B) {
			dir := genDir(b, meters, 100)
			e := benchEngine(b, dir, clock.NewFake(t0))
			e.mu.Lock()
			defer e.mu.Unlock()
			for a := range meters / 100 {
				e.area(fmt.Sprintf("TA-%05d", a))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e.refreshDirectory()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(meters), "ns/meter")
		})
	}
}
