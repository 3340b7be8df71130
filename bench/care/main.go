// Command care measures customer care at scale (issue 22): a synthetic
// fleet in the real contacts registry, a storm of power_off last gasps
// through the real rules engine and notify outbox, then the care
// projection catching up on it from scratch (the storm's decisions never
// waited for it), the restoration caught up in turn, and the reliability
// report over a month that holds a province's interruptions. It prints one
// table. With -alongside care's projection steps while the storm and the
// restoration go through the rules, -follow apart (Run waits care.follow,
// 2 s by default): what the storm's calls pay for care.
//
//	go run ./bench/care -customers 1000000 -areas 10000 -events 400000 -month 1000000
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/care"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/fleet"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

func main() {
	customers := flag.Int("customers", 1_000_000, "meters in the fleet")
	areas := flag.Int("areas", 10_000, "transformer areas")
	events := flag.Int("events", 400_000, "meters dark in the storm (whole areas)")
	month := flag.Int("month", 1_000_000, "interruptions of the month the report reads (the storm's and synthetic ones)")
	driver := flag.String("driver", "sqlite", "store driver: sqlite or postgres")
	dsn := flag.String("dsn", "", "store DSN (postgres; a schema of its own is created and dropped)")
	alongside := flag.Bool("alongside", false, "care steps during the storm and the restoration")
	follow := flag.Duration("follow", 2*time.Second, "with -alongside: the pause between care's steps (care.follow)")
	flag.Parse()
	if !*alongside {
		*follow = -1
	}
	if err := run(*customers, *areas, *events, *month, *driver, *dsn, *follow); err != nil {
		fmt.Fprintln(os.Stderr, "care:", err)
		os.Exit(1)
	}
}

type figure struct{ name, value, target string }

// follow < 0: care does not step during the storm and the restoration.
func run(customers, areas, events, month int, driver, dsn string, follow time.Duration) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "gridbell-care-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if driver == "postgres" {
		drop, err := pgSchema(ctx, &dsn)
		if err != nil {
			return err
		}
		defer drop()
	}
	db, err := store.Open(ctx, store.Config{Driver: driver, DSN: dsn}, dir)
	if err != nil {
		return err
	}
	defer db.Close()
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	var res []figure
	add := func(name, value, target string) { res = append(res, figure{name, value, target}) }

	reg, err := importFleet(ctx, db, fleet.Generate(fleet.Options{Customers: customers, Areas: areas, Seed: 1}), log)
	if err != nil {
		return err
	}
	t0 := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	scfg := notify.Config{OutboxFile: dir + "/outbox.jsonl"}
	sender, err := notify.NewSender(scfg, dir, log)
	if err != nil {
		return err
	}
	outbox, err := notify.NewOutbox(scfg, notify.QuietHours{}, db, reg, sender, clk, log)
	if err != nil {
		return err
	}
	eng, err := rules.New(rules.Config{Tick: time.Hour}, db, reg, outbox, clk, log)
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(rctx) }()
	defer func() { stop(); <-done }()

	var dark []string
	for a := 1; a <= areas && len(dark) < events; a++ {
		dark = append(dark, reg.AreaMeters(fmt.Sprintf("TA-%04d", a))...)
	}
	c, err := care.New(ctx, care.Config{}, db, reg, outbox, outbox, clk, log)
	if err != nil {
		return err
	}
	careNote := "care not running"
	if follow >= 0 {
		careNote = "care stepping every " + follow.String()
	}
	start := time.Now()
	stopCare := stepAlongside(ctx, c, follow)
	slowest, err := feed(ctx, eng, dark, event.PowerOff, t0)
	if err != nil {
		return err
	}
	clk.Set(t0.Add(61 * time.Second))
	if err := eng.Tick(ctx); err != nil {
		return err
	}
	add("storm through the rules ("+careNote+")", fmt.Sprintf("%d meters dark, %d records, in %s; slowest call %s; %s",
		len(dark), len(eng.Outages("active")), time.Since(start).Round(time.Millisecond), slowest.Round(time.Millisecond), stopCare()), "")
	add("care catch-up after the storm", catchUp(ctx, c), "")
	clk.Set(t0.Add(90 * time.Minute))
	start = time.Now()
	stopCare = stepAlongside(ctx, c, follow)
	if slowest, err = feed(ctx, eng, dark, event.PowerOn, t0.Add(90*time.Minute)); err != nil {
		return err
	}
	if err := eng.Tick(ctx); err != nil {
		return err
	}
	add("restoration through the rules ("+careNote+")", fmt.Sprintf("%s; slowest call %s; %s",
		time.Since(start).Round(time.Millisecond), slowest.Round(time.Millisecond), stopCare()), "")
	add("care catch-up after the restoration", catchUp(ctx, c), "")

	start = time.Now()
	n, err := synthesize(ctx, db, reg, month-len(dark), t0)
	if err != nil {
		return err
	}
	if err := c.RebuildDaily(ctx); err != nil { // what the projection keeps for its own rows
		return err
	}
	add("synthetic interruptions of the month written, daily rollup rebuilt", fmt.Sprintf("%d in %s", n, time.Since(start).Round(time.Millisecond)), "")
	cst := time.FixedZone("CST", 8*3600) // the month as a manager asks it (Asia/Shanghai)
	q := care.Query{From: time.Date(2026, 11, 1, 0, 0, 0, 0, cst), To: time.Date(2026, 12, 1, 0, 0, 0, 0, cst)}
	for _, by := range []string{"grid", "grid", "feeder", "area"} {
		q.By = by
		start = time.Now()
		rep, err := c.Reliability(ctx, q)
		if err != nil {
			return err
		}
		add(fmt.Sprintf("reliability report, month, by %s", by), fmt.Sprintf("%s: %d rows, %d interruptions, SAIFI %.3f, SAIDI %.1f, %d frequent-outage customers, %d called",
			time.Since(start).Round(time.Millisecond), len(rep.Rows), rep.Total.Interruptions+rep.Total.Momentary, rep.Total.SAIFI, rep.Total.SAIDI,
			rep.Total.FrequentOutageCustomers, rep.Total.Proactive.Called), "< 2 s")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "care: %d customers, %d areas, store %s, GOMAXPROCS %d, month of %d interruptions\n", reg.Len(), areas, driver, runtime.GOMAXPROCS(0), month)
	fmt.Fprintln(tw, "figure\tvalue\ttarget")
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.name, r.value, r.target)
	}
	return tw.Flush()
}

// catchUp steps c until a step reads nothing new, and says how long it took.
func catchUp(ctx context.Context, c *care.Care) string {
	start := time.Now()
	var rows, steps int
	for {
		st, err := c.Step(ctx)
		if err != nil {
			return "error: " + err.Error()
		}
		steps++
		rows += st.Written
		if st.Meters == 0 && st.Records == 0 {
			break
		}
	}
	return fmt.Sprintf("%d rows written in %d steps, %s", rows, steps, time.Since(start).Round(time.Millisecond))
}

// stepAlongside steps c, follow apart, until the returned stop is called;
// stop says how many steps ran (or the first error). follow < 0: none.
func stepAlongside(ctx context.Context, c *care.Care, follow time.Duration) (stop func() string) {
	if follow < 0 {
		return func() string { return "" }
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan string, 1)
	go func() {
		steps := 0
		for sctx.Err() == nil {
			if _, err := c.Step(sctx); err != nil && sctx.Err() == nil {
				done <- "care step failed: " + err.Error()
				return
			}
			steps++
			select {
			case <-sctx.Done():
			case <-time.After(follow):
			}
		}
		done <- fmt.Sprintf("%d care steps meanwhile", steps)
	}()
	return func() string { cancel(); return <-done }
}

// feed hands the rules one event of typ per meter, 5,000 a call, and says
// how long the slowest call took.
func feed(ctx context.Context, eng *rules.Engine, meters []string, typ event.MeterEventType, at time.Time) (time.Duration, error) {
	var slowest time.Duration
	for i := 0; i < len(meters); i += 5000 {
		var evs []event.Event
		for _, m := range meters[i:min(i+5000, len(meters))] {
			evs = append(evs, event.Event{Meter: &event.MeterEvent{Meter: m, TS: at, Type: typ}})
		}
		start := time.Now()
		if err := eng.Handle(ctx, evs); err != nil {
			return slowest, err
		}
		slowest = max(slowest, time.Since(start))
	}
	return slowest, nil
}

// synthesize writes n interruptions of random customers over November
// through care's own table format, as if earlier outages of the month had
// been projected: the report reads a province's month. One in 20 is a
// customer's third sustained interruption or later (the frequent-outage
// count reads those), one in 20 brings a hotline call during it, and as
// many calls again find no outage (the proactive figures read the month's
// calls).
func synthesize(ctx context.Context, db *store.DB, reg *contacts.Registry, n int, t0 time.Time) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	rng := rand.New(rand.NewPCG(3, 3))
	grids := reg.Grids()
	var meters []contacts.MeterInfo
	for _, g := range grids {
		info, _ := reg.Grid(g)
		for _, a := range info.Areas {
			for _, m := range reg.AreaMeters(a) {
				if mi, ok := reg.Meter(m); ok {
					meters = append(meters, mi)
				}
			}
		}
	}
	month := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	const per, nc = 500, 13
	args := make([]any, 0, per*nc)
	var calls []any
	flush := func(rows int) error {
		if rows == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO care_interruptions (outage, account, grid, feeder, area, class, planned,
			start_ns, end_ns, open, reported, sms_ns, nth) VALUES `+store.Values(db.Postgres(), rows, nc)+` ON CONFLICT DO NOTHING`, args...)
		args = args[:0]
		if err == nil && len(calls) > 0 {
			_, err = tx.ExecContext(ctx, `INSERT INTO care_calls (account, at_ns, outage) VALUES `+
				store.Values(db.Postgres(), len(calls)/3, 3)+` ON CONFLICT DO NOTHING`, calls...)
			calls = calls[:0]
		}
		return err
	}
	for i := range n {
		mi := meters[rng.IntN(len(meters))]
		start := month.Add(time.Duration(rng.Int64N(int64(29 * 24 * time.Hour))))
		dur := time.Duration(rng.Int64N(int64(3 * time.Hour)))
		id := fmt.Sprintf("SYN-%07d", i/50)
		nth := int64(0)
		if dur >= 5*time.Minute { // care.sustained_after's default
			nth = 1
			if rng.IntN(20) == 0 {
				nth = 3 + rng.Int64N(3)
			}
		}
		args = append(args, id, mi.Account, mi.Grid, mi.Feeder, mi.Area, string(mi.Class), int64(rng.IntN(5)/4),
			start.UnixNano(), start.Add(dur).UnixNano(), "", int64(0), start.Add(2*time.Minute).UnixNano(), nth)
		if rng.IntN(20) == 0 {
			calls = append(calls, mi.Account, start.Add(time.Duration(rng.Int64N(int64(dur)+1))).UnixNano(), id)
		}
		if rng.IntN(20) == 0 {
			other := meters[rng.IntN(len(meters))]
			calls = append(calls, other.Account, month.Add(time.Duration(rng.Int64N(int64(30*24*time.Hour)))).UnixNano(), "")
		}
		if len(args) == per*nc {
			if err := flush(per); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(len(args) / nc); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

func importFleet(ctx context.Context, db *store.DB, f *fleet.Fleet, log zerolog.Logger) (*contacts.Registry, error) {
	reg, err := contacts.Open(ctx, db, log)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(f.WriteCSV(pw, false)) }()
	var rejects bytes.Buffer
	if _, err := reg.Import(ctx, pr, &rejects); err != nil {
		return nil, err
	}
	return reg, nil
}

// pgSchema creates a fresh schema on the server of *dsn and points *dsn at
// it; drop removes it.
func pgSchema(ctx context.Context, dsn *string) (func(), error) {
	admin, err := store.Open(ctx, store.Config{Driver: "postgres", DSN: *dsn}, "")
	if err != nil {
		return nil, err
	}
	schema := fmt.Sprintf("bench_care_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		return nil, err
	}
	sep := "?"
	if bytes.ContainsRune([]byte(*dsn), '?') {
		sep = "&"
	}
	*dsn += sep + "search_path=" + schema
	return func() {
		admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`)
		admin.Close()
	}, nil
}
