package care

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// A province's month holds about a million interruptions: the report reads
// whole days from care_daily, a rollup of the closed interruptions by the
// day they began (midnight Asia/Shanghai), grid, feeder, area and planned,
// which the projection keeps in the transaction that writes the rows.
// Only the edges of a period that are not whole days, and the interruptions
// still open, are read from the rows themselves.

// DayZone is where days begin, for the rollup and for the dates the API
// reads and writes: the utilities' own time.
var DayZone = func() *time.Location {
	if l, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return l
	}
	return time.FixedZone("CST", 8*3600)
}()

// dayOf is the start (Unix ns) of the day holding ns.
func dayOf(ns int64) int64 {
	t := time.Unix(0, ns).In(DayZone)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, DayZone).UnixNano()
}

// nextDay is the first day start at or after ns.
func nextDay(ns int64) int64 {
	d := dayOf(ns)
	if d == ns {
		return d
	}
	t := time.Unix(0, d).In(DayZone)
	return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, DayZone).UnixNano()
}

// dayKey is one rollup row's key.
type dayKey struct {
	day                int64
	grid, feeder, area string
	planned            bool
}

// dayFigures are one rollup row's figures, or a change of them.
type dayFigures struct{ sustained, ns, momentary, affected, notified int64 }

func (f *dayFigures) add(o dayFigures, sign int64) {
	f.sustained += sign * o.sustained
	f.ns += sign * o.ns
	f.momentary += sign * o.momentary
	f.affected += sign * o.affected
	f.notified += sign * o.notified
}

// contrib is what a closed interruption adds to the rollup.
type contrib struct {
	key dayKey
	fig dayFigures
}

// contribution of it with sustained after sus; nil while it is open.
func (it *interruption) contribution(sus int64) *contrib {
	if it.end == 0 {
		return nil
	}
	c := &contrib{key: dayKey{dayOf(it.start), it.grid, it.feeder, it.area, it.planned}, fig: dayFigures{affected: 1}}
	if d := it.end - it.start; d >= sus {
		c.fig.sustained, c.fig.ns = 1, d
	} else {
		c.fig.momentary = 1
	}
	if it.sms > 0 {
		c.fig.notified = 1
	}
	return c
}

// roll moves it's contribution in the rollup from what it was to what it
// is now, into deltas.
func (p *projection) roll(it *interruption, sus int64) {
	now := it.contribution(sus)
	if it.rolled != nil && now != nil && *it.rolled == *now {
		return
	}
	if it.rolled != nil {
		p.delta(it.rolled, -1)
	}
	if now != nil {
		p.delta(now, 1)
	}
	it.rolled = now
}

func (p *projection) delta(c *contrib, sign int64) {
	if p.deltas == nil {
		p.deltas = map[dayKey]*dayFigures{}
	}
	f := p.deltas[c.key]
	if f == nil {
		f = &dayFigures{}
		p.deltas[c.key] = f
	}
	f.add(c.fig, sign)
}

var dailyCols = []string{"day", "grid", "feeder", "area", "planned", "sustained", "ns", "momentary", "affected", "notified"}

// writeDaily adds deltas to care_daily, and their sums by feeder to
// care_daily_feeder.
func writeDaily(ctx context.Context, tx *sql.Tx, postgres bool, deltas map[dayKey]*dayFigures) error {
	if len(deltas) == 0 {
		return nil
	}
	feeders := map[dayKey]*dayFigures{}
	for k, f := range deltas {
		k.area = ""
		g := feeders[k]
		if g == nil {
			g = &dayFigures{}
			feeders[k] = g
		}
		g.add(*f, 1)
	}
	if err := upsertDaily(ctx, tx, postgres, "care_daily", dailyCols, deltas); err != nil {
		return err
	}
	cols := slices.DeleteFunc(slices.Clone(dailyCols), func(c string) bool { return c == "area" })
	return upsertDaily(ctx, tx, postgres, "care_daily_feeder", cols, feeders)
}

func upsertDaily(ctx context.Context, tx *sql.Tx, postgres bool, table string, cols []string, deltas map[dayKey]*dayFigures) error {
	withArea := slices.Contains(cols, "area")
	vals := make([]any, 0, len(deltas)*len(cols))
	for k, f := range deltas {
		if *f == (dayFigures{}) {
			continue
		}
		vals = append(vals, k.day, k.grid, k.feeder)
		if withArea {
			vals = append(vals, k.area)
		}
		vals = append(vals, boolInt(k.planned), f.sustained, f.ns, f.momentary, f.affected, f.notified)
	}
	keys := "day, grid, feeder, planned"
	if withArea {
		keys = "day, grid, feeder, area, planned"
	}
	nc := len(cols)
	err := store.ExecBatches(ctx, tx, len(vals)/nc, 500, func(n int) string {
		return `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES ` + store.Values(postgres, n, nc) +
			` ON CONFLICT (` + keys + `) DO UPDATE SET sustained = ` + table + `.sustained + excluded.sustained,
			ns = ` + table + `.ns + excluded.ns, momentary = ` + table + `.momentary + excluded.momentary,
			affected = ` + table + `.affected + excluded.affected, notified = ` + table + `.notified + excluded.notified`
	}, func(args []any, from, to int) ([]any, error) { return append(args, vals[from*nc:to*nc]...), nil })
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", table, err)
	}
	return nil
}

// RebuildDaily computes care_daily again from the closed interruptions:
// for rows written by other means than the projection (a bulk load).
func (c *Care) RebuildDaily(ctx context.Context) error {
	rows, err := c.db.QueryContext(ctx, `SELECT grid, feeder, area, planned, start_ns, end_ns, sms_ns FROM care_interruptions WHERE end_ns <> 0`)
	if err != nil {
		return fmt.Errorf("cannot read interruptions: %w", err)
	}
	p := &projection{}
	for rows.Next() {
		it := &interruption{}
		var planned int64
		if err := rows.Scan(&it.grid, &it.feeder, &it.area, &planned, &it.start, &it.end, &it.sms); err != nil {
			rows.Close()
			return fmt.Errorf("cannot read interruptions: %w", err)
		}
		it.planned = planned != 0
		p.roll(it, int64(c.cfg.SustainedAfter))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, t := range []string{"care_daily", "care_daily_feeder"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+t); err != nil {
			return err
		}
	}
	if err := writeDaily(ctx, tx, c.db.Postgres(), p.deltas); err != nil {
		return err
	}
	return tx.Commit()
}
