// Command smsload measures notify end to end: intents stored in the durable
// SQLite outbox, dispatched by the real twilio-go client to a local Twilio
// test server. It prints one table: throughput of a burst (everything
// enqueued first, as in a storm) and intent→API-call latency at a steady
// intent rate.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/secret"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/notify/notifytest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

const (
	sid   = "AC0123456789abcdef0123456789abcdef"
	token = "0123456789abcdef0123456789abcdef"
)

type result struct {
	mode               string
	n                  int
	enqueuePerSec      float64
	sendPerSec         float64
	p50, p99, maxLat   time.Duration
	wall               time.Duration
	received, distinct int
}

func main() {
	n := flag.Int("n", 20000, "messages per run")
	steady := flag.Float64("steady-rate", 1500, "intents per second in the steady run (0 = skip)")
	workers := flag.Int("workers", 32, "sms.workers")
	rulesTx := flag.Bool("rules-tx", false, "enqueue in a transaction of the caller's, as the rules do, instead of Enqueue's own")
	only := flag.String("mode", "", "run only burst or steady")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "smsload:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var rows []result
	modes := []string{"burst", "steady"}
	if *only != "" {
		modes = []string{*only}
	}
	for _, mode := range modes {
		if mode == "steady" && *steady <= 0 {
			continue
		}
		r, err := run(mode, *n, *steady, *workers, *rulesTx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "smsload:", err)
			os.Exit(1)
		}
		rows = append(rows, r)
	}
	host, _ := os.Hostname()
	fmt.Printf("smsload %s, GOMAXPROCS=%d, %s, workers=%d, rules-tx=%v\n", time.Now().UTC().Format(time.DateOnly), runtime.GOMAXPROCS(0), host, *workers, *rulesTx)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "mode\tmessages\tenqueue/s\tsent/s\tp50 intent→API\tp99 intent→API\tmax\tduplicates\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%.0f\t%s\t%s\t%s\t%d\t\n", r.mode, r.n, r.enqueuePerSec, r.sendPerSec,
			r.p50.Round(time.Millisecond/10), r.p99.Round(time.Millisecond/10), r.maxLat.Round(time.Millisecond), r.received-r.distinct)
	}
	w.Flush()
}

func run(mode string, n int, rate float64, workers int, rulesTx bool) (result, error) {
	srv := twiliotest.New(sid, token)
	defer srv.Close()
	dir, err := os.MkdirTemp("", "smsload")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: "sqlite"}, dir)
	if err != nil {
		return result{}, err
	}
	defer db.Close()
	cfg := notify.Config{Sender: "twilio", Workers: workers, Twilio: notify.TwilioConfig{
		AccountSID: sid, AuthToken: secret.String(token), MessagingServiceSID: "MG0123456789abcdef0123456789abcdef",
		APIBase: srv.URL, Rate: 100000, StatusCallback: "https://gridbell.example/twilio/status"}}
	snd, err := notify.NewSender(cfg, dir, zerolog.Nop())
	if err != nil {
		return result{}, err
	}
	directory := notifytest.NewDirectory()
	for i := range n {
		directory.Put(notifytest.Resident(fmt.Sprintf("01%08d", i), "TA-0101", "zh", fmt.Sprintf("+86138%08d", i)))
	}
	o, err := notify.NewOutbox(cfg, notify.QuietHours{}, db, directory, snd, clock.Real{}, zerolog.Nop())
	if err != nil {
		return result{}, err
	}
	created := make([]time.Time, n)
	enqueue := func(from, to int) error {
		now := time.Now()
		ins := make([]event.Intent, 0, to-from)
		for i := from; i < to; i++ {
			created[i] = now
			ins = append(ins, event.Intent{Key: fmt.Sprintf("outage|OMS-1|01%08d", i), Kind: event.KindOutage,
				Account: fmt.Sprintf("01%08d", i), Ref: "OMS-1", Grid: "G01", CreatedAt: now, Priority: event.PriorityOutage,
				Vars: map[string]string{"area": "TA-0101", "start": "2026-11-26T09:02:00+08:00", "etr": "2026-11-26T12:00:00+08:00"}})
		}
		if !rulesTx {
			return o.Enqueue(ctx, nil, ins)
		}
		// As the rules do: their own transaction, committed after Enqueue.
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := o.Enqueue(ctx, tx, ins); err != nil {
			return err
		}
		return tx.Commit()
	}
	r := result{mode: mode, n: n}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	if mode == "burst" {
		for i := 0; i < n; i += 500 {
			if err := enqueue(i, min(i+500, n)); err != nil {
				return r, err
			}
		}
		r.enqueuePerSec = float64(n) / time.Since(start).Seconds()
		start = time.Now()
		go func() { done <- o.Run(runCtx) }()
	} else {
		go func() { done <- o.Run(runCtx) }()
		tick := time.NewTicker(5 * time.Millisecond)
		for i := 0; i < n; {
			<-tick.C
			// Catch up by elapsed time, so a slow tick does not lower the rate.
			to := min(n, int(time.Since(start).Seconds()*rate))
			if to > i {
				if err := enqueue(i, to); err != nil {
					return r, err
				}
				i = to
			}
		}
		tick.Stop()
		r.enqueuePerSec = float64(n) / time.Since(start).Seconds()
	}
	for srv.Count() < n {
		time.Sleep(time.Millisecond)
		if time.Since(start) > 5*time.Minute {
			return r, fmt.Errorf("%s: only %d of %d sent after 5 minutes", mode, srv.Count(), n)
		}
	}
	r.wall = time.Since(start)
	cancel()
	if err := <-done; err != nil {
		return r, err
	}
	got := srv.Received()
	last := got[len(got)-1].At
	r.sendPerSec = float64(n) / last.Sub(start).Seconds()
	seen := map[string]bool{}
	var lat []time.Duration
	for _, m := range got {
		r.received++
		if seen[m.To] {
			continue
		}
		seen[m.To] = true
		var i int
		fmt.Sscanf(m.To, "+86138%d", &i)
		lat = append(lat, m.At.Sub(created[i]))
	}
	r.distinct = len(seen)
	slices.Sort(lat)
	r.p50, r.p99, r.maxLat = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	return r, nil
}
