package rules

import (
	"context"
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
	wg.Go(func() { // views
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, o := range e.Outages("") {
				e.Customers(o.ID, "")
				e.Verification(o.ID)
			}
		}
	})
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
