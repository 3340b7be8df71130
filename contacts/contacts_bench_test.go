package contacts

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/fleet"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// benchSizes are the fleet sizes of the import, rebuild and memory
// benchmarks. Pick one with -bench 'Import/sqlite/1000000'; -short skips
// the million.
var benchSizes = []int{10_000, 100_000, 1_000_000}

func sizes(b *testing.B) []int {
	if testing.Short() {
		return benchSizes[:2]
	}
	return benchSizes
}

var fleetFiles = map[int][]byte{}

// benchFile is a messy contacts file of n rows, made once per size.
func benchFile(b *testing.B, n int) []byte {
	if f, ok := fleetFiles[n]; ok {
		return f
	}
	var buf bytes.Buffer
	f := fleet.Generate(fleet.Options{Customers: n, Areas: max(1, n/200), Grids: max(1, n/5000), Seed: 20261126,
		PrepaidShare: 0.2, Messy: true})
	if err := f.WriteCSV(&buf, false); err != nil {
		b.Fatal(err)
	}
	fleetFiles[n] = buf.Bytes()
	return buf.Bytes()
}

func BenchmarkClean(b *testing.B) {
	cases := map[string][]string{
		"clean":    {"13812345678", "+8613987654321", "15912345678"},
		"messy":    {"138 1234 5678", "+86-139-8765-4321", "１３８１２３４５６７８", "0086 13812345678"},
		"split":    {"13812345678/13987654321", "138 1234 5678 139 8765 4321"},
		"landline": {"0755-88881234", "(010)12345678"},
		"invalid":  {"无", "", "13800000000", "1381234567"},
		"foreign":  {"+44 7911 123456", "+1 650-253-0000"},
	}
	for _, name := range []string{"clean", "messy", "split", "landline", "invalid", "foreign"} {
		in := cases[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in[0])))
			for i := 0; b.Loop(); i++ {
				Clean(in[i%len(in)])
			}
		})
	}
}

func BenchmarkImport(b *testing.B) {
	for _, driver := range storetest.Backends {
		for _, n := range sizes(b) {
			b.Run(fmt.Sprintf("%s/%d", driver, n), func(b *testing.B) { benchImport(b, driver, n) })
		}
	}
}

func benchImport(b *testing.B, driver string, n int) {
	file := benchFile(b, n)
	b.ReportAllocs()
	b.SetBytes(int64(len(file)))
	for b.Loop() {
		b.StopTimer()
		r, _ := newBenchRegistry(b, driver)
		b.StartTimer()
		if _, err := r.Import(context.Background(), bytes.NewReader(file), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func newBenchRegistry(b *testing.B, driver string) (*Registry, func() (*Registry, error)) {
	db := storetest.Open(b, driver)
	open := func() (*Registry, error) { return Open(context.Background(), db, zerolog.Nop()) }
	r, err := open()
	if err != nil {
		b.Fatal(err)
	}
	return r, open
}

// BenchmarkRebuild times Open on a store holding n customers: the index
// rebuilt from the store at start.
func BenchmarkRebuild(b *testing.B) {
	for _, driver := range storetest.Backends {
		for _, n := range sizes(b) {
			b.Run(fmt.Sprintf("%s/%d", driver, n), func(b *testing.B) {
				r, open := newBenchRegistry(b, driver)
				if _, err := r.Import(context.Background(), bytes.NewReader(benchFile(b, n)), nil); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := open(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/float64(n)*1e9, "ns/customer")
			})
		}
	}
}

// BenchmarkIndexBytes reports the heap an index holds per customer (meter).
func BenchmarkIndexBytes(b *testing.B) {
	for _, n := range sizes(b) {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			file := benchFile(b, n)
			var perCustomer float64
			for b.Loop() {
				perCustomer = indexBytes(b, file) / float64(n)
			}
			b.ReportMetric(perCustomer, "bytes/customer")
		})
	}
}

func indexBytes(b *testing.B, file []byte) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fr, err := newFileReader(bytes.NewReader(file))
	if err != nil {
		b.Fatal(err)
	}
	bl := newBuilder(1024)
	if err := readRows(fr, bl, newRejectWriter(nil), &Summary{}, nil); err != nil {
		b.Fatal(err)
	}
	ix := bl.freeze()
	bl = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ix)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc)
}

// BenchmarkLookup is the per-event path: meter → area, and the meters of an
// area.
func BenchmarkLookup(b *testing.B) {
	r, _ := newBenchRegistry(b, "sqlite")
	if _, err := r.Import(context.Background(), bytes.NewReader(benchFile(b, 100_000)), nil); err != nil {
		b.Fatal(err)
	}
	ix := r.ix.Load()
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = ix.meters.get(int32(i * 97 % ix.meters.len()))
	}
	b.Run("Meter", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, ok := r.Meter(ids[i%len(ids)]); !ok {
				b.Fatal("meter not found")
			}
		}
	})
	b.Run("AreaMeters", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			area, _ := r.MeterArea(ids[i%len(ids)])
			if len(r.AreaMeters(area)) == 0 {
				b.Fatal("empty area")
			}
		}
	})
	b.Run("Account", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			m, _ := r.Meter(ids[i%len(ids)])
			r.Account(m.Account)
		}
	})
}

// BenchmarkSQLiteBatch compares rows per INSERT on SQLite (sqliteBatchRows).
func BenchmarkSQLiteBatch(b *testing.B) {
	defer func(n int) { sqliteBatchRows = n }(sqliteBatchRows)
	for _, n := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			sqliteBatchRows = n
			benchImport(b, "sqlite", 20_000)
		})
	}
}
