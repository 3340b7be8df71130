package ingest

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestAppendFloat: the line protocol's float text is strconv's shortest
// form, whichever path writes it.
func TestAppendFloat(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 0.30000000000000004, 220.1, 12345.67, -0.0005, 0.00005,
		999999999999.9999, 1e12, -1e12, 1e15, 1e300, 5e-324, math.MaxFloat64, 123456789.1234, 0.1 + 0.2, 1.005, 2.675}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		k := rng.IntN(6)
		x := rng.Int64N(2_000_000_000_000) - 1_000_000_000_000
		vals = append(vals, float64(x)/math.Pow10(k), rng.NormFloat64()*math.Pow10(rng.IntN(16)-4))
	}
	for _, v := range vals {
		got := string(appendFloat(nil, v))
		if want := strconv.FormatFloat(v, 'f', -1, 64); got != want {
			t.Fatalf("appendFloat(%v) = %s, want %s", v, got, want)
		}
	}
}

// FuzzAppendFloat: any finite value reads back as itself.
func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 220.1, -0.0005, 12345.67, 1e12, 0.1 + 0.2} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		got := string(appendFloat(nil, v))
		if want := strconv.FormatFloat(v, 'f', -1, 64); got != want {
			t.Fatalf("appendFloat(%v) = %s, want %s", v, got, want)
		}
	})
}

func BenchmarkAppendFloat(b *testing.B) {
	vals := []float64{220.1, 12345.67, 5.25, 1.163, 0, 98.5}
	buf := make([]byte, 0, 64)
	for i := 0; b.Loop(); i++ {
		buf = appendFloat(buf[:0], vals[i%len(vals)])
	}
}
