package notify

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

func BenchmarkSegments(b *testing.B) {
	for _, body := range []string{strings.Repeat("Power cut ", 30), strings.Repeat("停电通知", 30)} {
		b.Run(fmt.Sprintf("%d-bytes", len(body)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				Segments(body)
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		b.Fatal(err)
	}
	for _, lang := range languages {
		b.Run(lang, func(b *testing.B) {
			vars := typicalVars(lang)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tpl.Render(lang, "outage", vars); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEnqueue stores intents in the outbox, a batch per transaction,
// on every backend. Keys are spread as a storm's are (outage/<id>/<account>
// over many outages), so inserts land all over the key index.
func BenchmarkEnqueue(b *testing.B) {
	for _, driver := range storetest.Backends {
		for _, batch := range []int{1, 100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/batch-%d", driver, batch), func(b *testing.B) {
				db := storetest.Open(b, driver)
				// No directory: Enqueue never reads one.
				o, err := NewOutbox(Config{}, QuietHours{}, db, nil, &recorder{}, clock.Real{}, zerolog.Nop())
				if err != nil {
					b.Fatal(err)
				}
				ins := loadIntents(batch, time.Now())
				size := 0
				for _, in := range ins {
					size += len(in.Key) + len(in.Account) + len(in.Ref) + len(in.Grid) + 80 // vars as JSON
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					for j := range ins {
						ins[j].Key = fmt.Sprintf("outage/OMS-%d/01%08d", (i*7919)%5000, i)
						i++
					}
					if err := o.Enqueue(context.Background(), nil, ins); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "intents/s")
			})
		}
	}
}

// BenchmarkDispatch sends b.N messages from the SQLite outbox to the Twilio
// test server through twilio-go: one op is one message, end to end.
func BenchmarkDispatch(b *testing.B) {
	for _, workers := range []int{8, 32} {
		b.Run(fmt.Sprintf("workers-%d", workers), func(b *testing.B) {
			srv := twiliotest.New(testSID, testToken)
			defer srv.Close()
			db := storetest.Open(b, "sqlite")
			cfg := crashConfig(srv.URL)
			cfg.Workers = workers
			snd, _ := NewSender(cfg, b.TempDir(), zerolog.Nop())
			o, err := NewOutbox(cfg, QuietHours{}, db, loadRegistry(b, db, b.N), snd, clock.Real{}, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			ins := loadIntents(b.N, time.Now())
			for i := 0; i < len(ins); i += 1000 {
				if err := o.Enqueue(context.Background(), nil, ins[i:min(i+1000, len(ins))]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- o.Run(ctx) }()
			for srv.Count() < b.N {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
