// Command smsload measures notify end to end: intents stored in the durable
// SQLite (or, with -pg, PostgreSQL) outbox, expanded against the real
// contacts registry and dispatched by the real twilio-go client to a local
// Twilio test server. It prints one table: throughput of a burst (everything
// enqueued first, as in a storm) and intent→API-call latency at a steady
// intent rate.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
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
	received, distinct int
}

func main() {
	n := flag.Int("n", 20000, "messages per run (below 1,111,111: see notifytest.Mobile)")
	steady := flag.Float64("steady-rate", 1500, "intents per second in the steady run (0 = skip)")
	workers := flag.Int("workers", 32, "sms.workers")
	rulesTx := flag.Bool("rules-tx", false, "enqueue in a transaction of the caller's, as the rules do, instead of Enqueue's own")
	pg := flag.String("pg", "", "PostgreSQL DSN: run on a fresh schema there instead of SQLite")
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
		r, err := run(mode, *n, *steady, *workers, *rulesTx, *pg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "smsload:", err)
			os.Exit(1)
		}
		rows = append(rows, r)
	}
	host, _ := os.Hostname()
	backend := "sqlite"
	if *pg != "" {
		backend = "postgres"
	}
	fmt.Printf("smsload %s, GOMAXPROCS=%d, %s, store=%s, workers=%d, rules-tx=%v\n",
		time.Now().UTC().Format(time.DateOnly), runtime.GOMAXPROCS(0), host, backend, *workers, *rulesTx)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "mode\tmessages\tenqueue/s\tsent/s\tp50 intent→API\tp99 intent→API\tmax\tduplicates\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%.0f\t%s\t%s\t%s\t%d\t\n", r.mode, r.n, r.enqueuePerSec, r.sendPerSec,
			r.p50.Round(time.Millisecond/10), r.p99.Round(time.Millisecond/10), r.maxLat.Round(time.Millisecond), r.received-r.distinct)
	}
	w.Flush()
}

// rig is one run's world: the Twilio test server, a fresh store with n
// customers imported into the contacts registry, and an outbox over both.
type rig struct {
	srv     *twiliotest.Server
	db      *store.DB
	o       *notify.Outbox
	dir     string
	rulesTx bool
	created []time.Time // per intent: when it was committed

	dropSchema func() // PostgreSQL only
}

func newRig(n, workers int, rulesTx bool, pgDSN string) (*rig, error) {
	r := &rig{srv: twiliotest.New(sid, token), rulesTx: rulesTx, created: make([]time.Time, n)}
	var err error
	if r.dir, err = os.MkdirTemp("", "smsload"); err != nil {
		return nil, err
	}
	if r.db, err = openStore(r, pgDSN); err != nil {
		return nil, err
	}
	cfg := notify.Config{Sender: "twilio", Workers: workers, Twilio: notify.TwilioConfig{
		AccountSID: sid, AuthToken: secret.String(token), MessagingServiceSID: "MG0123456789abcdef0123456789abcdef",
		APIBase: r.srv.URL, Rate: 100000, StatusCallback: "https://gridbell.example/twilio/status"}}
	snd, err := notify.NewSender(cfg, r.dir, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	// The real registry, as in production: expansion reads every account from it.
	ctx := context.Background()
	reg, err := contacts.Open(ctx, r.db, zerolog.Nop())
	if err != nil {
		return r, err
	}
	if _, err := reg.Import(ctx, strings.NewReader(notifytest.Residents(n)), io.Discard); err != nil {
		return r, err
	}
	r.o, err = notify.NewOutbox(cfg, notify.QuietHours{}, r.db, reg, snd, clock.Real{}, zerolog.Nop())
	return r, err
}

// openStore opens SQLite in the rig's directory or, with a DSN, a fresh
// PostgreSQL schema that close drops.
func openStore(r *rig, pgDSN string) (*store.DB, error) {
	ctx := context.Background()
	if pgDSN == "" {
		return store.Open(ctx, store.Config{Driver: "sqlite"}, r.dir)
	}
	admin, err := store.Open(ctx, store.Config{Driver: "postgres", DSN: pgDSN}, "")
	if err != nil {
		return nil, err
	}
	schema := fmt.Sprintf("smsload_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return nil, err
	}
	r.dropSchema = func() {
		admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	}
	sep := "?"
	if strings.Contains(pgDSN, "?") {
		sep = "&"
	}
	return store.Open(ctx, store.Config{Driver: "postgres", DSN: pgDSN + sep + "search_path=" + schema}, "")
}

func (r *rig) close() {
	r.srv.Close()
	if r.db != nil {
		r.db.Close()
	}
	if r.dropSchema != nil {
		r.dropSchema()
	}
	os.RemoveAll(r.dir)
}

// enqueue stores the outage intents of accounts [from, to).
func (r *rig) enqueue(ctx context.Context, from, to int) error {
	now := time.Now()
	ins := make([]event.Intent, 0, to-from)
	for i := from; i < to; i++ {
		r.created[i] = now
		ins = append(ins, event.Intent{Key: fmt.Sprintf("outage|OMS-1|01%08d", i), Kind: event.KindOutage,
			Account: fmt.Sprintf("01%08d", i), Ref: "OMS-1", Grid: "G01", CreatedAt: now, Priority: event.PriorityOutage,
			Vars: map[string]string{"area": "TA-0101", "start": "2026-11-26T09:02:00+08:00", "etr": "2026-11-26T12:00:00+08:00"}})
	}
	if !r.rulesTx {
		return r.o.Enqueue(ctx, nil, ins)
	}
	// As the rules do: their own transaction, committed after Enqueue.
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := r.o.Enqueue(ctx, tx, ins); err != nil {
		return err
	}
	return tx.Commit()
}

func run(mode string, n int, rate float64, workers int, rulesTx bool, pgDSN string) (result, error) {
	rg, err := newRig(n, workers, rulesTx, pgDSN)
	if rg != nil {
		defer rg.close()
	}
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	r := result{mode: mode, n: n}
	start := time.Now()
	if mode == "burst" {
		for i := 0; i < n; i += 500 {
			if err := rg.enqueue(ctx, i, min(i+500, n)); err != nil {
				return r, err
			}
		}
		r.enqueuePerSec = float64(n) / time.Since(start).Seconds()
		start = time.Now()
		go func() { done <- rg.o.Run(ctx) }()
	} else {
		go func() { done <- rg.o.Run(ctx) }()
		if err := rg.steady(ctx, n, rate, start); err != nil {
			return r, err
		}
		r.enqueuePerSec = float64(n) / time.Since(start).Seconds()
	}
	for rg.srv.Count() < n {
		time.Sleep(time.Millisecond)
		if time.Since(start) > 5*time.Minute {
			return r, fmt.Errorf("%s: only %d of %d sent after 5 minutes", mode, rg.srv.Count(), n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		return r, err
	}
	rg.measure(&r, start)
	return r, nil
}

// steady stores n intents at rate a second from start.
func (r *rig) steady(ctx context.Context, n int, rate float64, start time.Time) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < n; {
		<-tick.C
		// Catch up by elapsed time, so a slow tick does not lower the rate.
		to := min(n, int(time.Since(start).Seconds()*rate))
		if to > i {
			if err := r.enqueue(ctx, i, to); err != nil {
				return err
			}
			i = to
		}
	}
	return nil
}

// measure fills res from what the server received.
func (r *rig) measure(res *result, start time.Time) {
	got := r.srv.Received()
	res.sendPerSec = float64(res.n) / got[len(got)-1].At.Sub(start).Seconds()
	seen := map[string]bool{}
	var lat []time.Duration
	for _, m := range got {
		res.received++
		if seen[m.To] {
			continue
		}
		seen[m.To] = true
		var i int
		fmt.Sscanf(m.To, "+861381%d", &i) // notifytest.Mobile(i)
		lat = append(lat, m.At.Sub(r.created[i]))
	}
	res.distinct = len(seen)
	slices.Sort(lat)
	res.p50, res.p99, res.maxLat = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
}
