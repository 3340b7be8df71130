package rules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// TestRefreshFacts: after another process imports a newer file and the
// registry refreshes, the engine's cached facts, area members, dark counts
// and concentrator links are those of the new file, on every backend.
func TestRefreshFacts(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			openSink(t, db)
			reg := openDirectory(t, db, "testdata/contacts.csv").(*contacts.Registry)
			clk := clock.NewFake(t0)
			e, err := New(Config{}, db, reg, tableSink{}, clk, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			step := func(d time.Duration, evs ...event.Event) {
				t.Helper()
				clk.Set(t0.Add(d))
				r := &request{evs: evs, done: make(chan error, 1)}
				e.process([]*request{r})
				if err := <-r.done; err != nil {
					t.Fatal(err)
				}
			}
			// M0102 and M0104 dark past the window: TA-01 and its meters are cached.
			step(0, meterEv("M0102", event.PowerOff, 0), meterEv("M0104", event.PowerOff, 0), readingEv("M0201", 0, 50))
			step(61 * time.Second)
			openDirectory(t, db, "testdata/contacts_reimport/reimport.csv") // another process
			if changed, err := reg.Refresh(context.Background()); err != nil || !changed {
				t.Fatalf("Refresh() = %v, %v", changed, err)
			}
			step(62 * time.Second)

			e.mu.RLock()
			defer e.mu.RUnlock()
			tests := []struct {
				meter                      string
				known                      bool
				account, area, grid, class string
				conc                       string // the concentrator it is behind; "" = none
			}{
				{"M0101", true, "A0101", "TA-01", "G1", "resident", "C-01"},
				{"M0102", false, "", "", "", "", ""},                            // retired
				{"M0104", true, "A0104", "TA-02", "G1", "life_support", "C-02"}, // moved
				{"M0105", true, "A0105", "TA-01", "G1", "resident", "C-01"},     // new
				{"M0201", true, "A0201", "TA-02", "G1", "resident", "C-02"},
			}
			for _, tt := range tests {
				i, ok := e.meterIdx[tt.meter]
				if !ok {
					t.Errorf("%s is not interned", tt.meter)
					continue
				}
				m := &e.meters[i]
				area, conc := "", ""
				if m.area >= 0 {
					area = e.areas[m.area].name
				}
				for c, set := range e.concMeters {
					if _, ok := set[i]; ok {
						conc += c
					}
				}
				got := []any{m.known, m.account, area, e.gridOf(m), e.classOf(m), conc}
				want := []any{tt.known, tt.account, tt.area, tt.grid, tt.class, tt.conc}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: known, account, area, grid, class, concentrator = %v, want %v", tt.meter, got, want)
				}
			}
			for _, a := range []struct {
				name    string
				members int
				dark    int
			}{{"TA-01", 3, 0}, {"TA-02", 5, 1}} {
				ar := e.areas[e.areaIdx[a.name]]
				if len(ar.meters) != a.members || ar.dark != a.dark {
					t.Errorf("%s: %d members, %d dark; want %d, %d", a.name, len(ar.meters), ar.dark, a.members, a.dark)
				}
			}
		})
	}
}

// TestRefreshWhileReading swaps the registry back and forth under a
// running engine while callers send events and read its views: run with
// -race, the refresh must happen in the writer only. After the last swap
// the engine's facts are those of the last file.
func TestRefreshWhileReading(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	openSink(t, db)
	reg := openDirectory(t, db, "testdata/contacts.csv").(*contacts.Registry)
	e, err := New(Config{Tick: time.Millisecond}, db, reg, tableSink{}, clock.NewFake(t0), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	files := []string{"testdata/contacts.csv", filepath.Join("testdata", "contacts_reimport", "reimport.csv")}
	var texts []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(b))
	}
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { readViews(e, stop) })
	wg.Go(func() { // events
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			typ := event.PowerOff
			if i%2 == 1 {
				typ = event.PowerOn
			}
			evs := []event.Event{meterEv("M0101", typ, time.Duration(i)*time.Second), meterEv("M0104", typ, time.Duration(i)*time.Second),
				meterEv("M0105", typ, time.Duration(i)*time.Second)}
			if err := e.Handle(ctx, evs); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i := range 20 {
		if _, err := reg.Import(ctx, strings.NewReader(texts[(i+1)%2]), nil); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if err := e.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	want := map[string]struct {
		known bool
		area  string
	}{"M0101": {true, "TA-01"}, "M0102": {true, "TA-01"}, "M0104": {true, "TA-01"}, "M0105": {false, ""}}
	for id, w := range want {
		i, ok := e.meterIdx[id]
		if !ok {
			if w.known {
				t.Errorf("meter %s not interned", id)
			}
			continue
		}
		m := &e.meters[i]
		area := ""
		if m.area >= 0 {
			area = e.areas[m.area].name
		}
		if m.known != w.known || area != w.area {
			t.Errorf("meter %s: known %v in %q, want %v in %q", id, m.known, area, w.known, w.area)
		}
	}
	a := e.areas[e.areaIdx["TA-01"]]
	if len(a.meters) != 4 {
		t.Errorf("TA-01 has %d meters, want 4", len(a.meters))
	}
}
