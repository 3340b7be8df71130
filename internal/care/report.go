package care

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Query is a reliability report's request (GET /api/v1/reliability).
type Query struct {
	From, To time.Time
	By       string   // grid, feeder or area
	Planned  string   // include (default), exclude or only
	Grids    []string // the grids the asker may see; nil = all
}

// ErrBadQuery is returned for a report request that asks for something
// that is not there: a wrong by or planned, or an empty period.
var ErrBadQuery = errors.New("bad reliability query")

// Report answers GET /api/v1/reliability (docs/interfaces.md §9).
type Report struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	By    string    `json:"by"`
	Rows  []Row     `json:"rows"`
	Total Row       `json:"total"`
}

// Row is one grid's, feeder's or area's indices (IEEE 1366).
type Row struct {
	Key                     string    `json:"key"`
	CustomersServed         int       `json:"customers_served"`
	Interruptions           int       `json:"interruptions"` // sustained customer interruptions
	CustomerMinutes         float64   `json:"customer_minutes"`
	Momentary               int       `json:"momentary"`
	Planned                 int       `json:"planned"`   // sustained, of planned outages
	Unplanned               int       `json:"unplanned"` // sustained, of the others
	SAIFI                   float64   `json:"saifi"`
	SAIDI                   float64   `json:"saidi"`
	CAIDI                   float64   `json:"caidi"`
	MAIFI                   float64   `json:"maifi"`
	FrequentOutageCustomers int       `json:"frequent_outage_customers"`
	Proactive               Proactive `json:"proactive"`
}

// Proactive says whether the SMS came before the call.
type Proactive struct {
	Affected        int     `json:"affected"`
	Notified        int     `json:"notified"`
	Called          int     `json:"called"`
	CalledBeforeSMS int     `json:"called_before_sms"`
	MedianLeadS     float64 `json:"median_lead_s"`
	leads           []float64
}

func (p *Proactive) add(called bool, sms, call int64) {
	if !called {
		return
	}
	p.Called++
	if sms == 0 || call < sms {
		p.CalledBeforeSMS++
		return
	}
	p.leads = append(p.leads, float64(call-sms)/float64(time.Second))
}

func (p *Proactive) finish() {
	p.MedianLeadS = median(p.leads)
	p.leads = nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func (q *Query) check() error {
	switch q.By {
	case "":
		q.By = "grid"
	case "grid", "feeder", "area":
	default:
		return fmt.Errorf("%w: by %q is not grid, feeder or area", ErrBadQuery, q.By)
	}
	switch q.Planned {
	case "":
		q.Planned = "include"
	case "include", "exclude", "only":
	default:
		return fmt.Errorf("%w: planned %q is not include, exclude or only", ErrBadQuery, q.Planned)
	}
	if !q.To.After(q.From) {
		return fmt.Errorf("%w: to is not after from", ErrBadQuery)
	}
	return nil
}

// cell is one (grid, key) pair's figures before rows are summed.
type cell struct{ grid, key string }

// Reliability computes the report of q.
func (c *Care) Reliability(ctx context.Context, q Query) (Report, error) {
	if err := q.check(); err != nil {
		return Report{}, err
	}
	served := c.servedCounts()
	rows := map[string]*Row{}
	row := func(grid, key string) *Row {
		if q.Grids != nil && !slices.Contains(q.Grids, grid) {
			return nil
		}
		r := rows[key]
		if r == nil {
			r = &Row{Key: key}
			rows[key] = r
		}
		return r
	}
	for cl, n := range served.by(q.By) {
		if r := row(cl.grid, cl.key); r != nil {
			r.CustomersServed += n
		}
	}
	if err := c.aggregate(ctx, q, row); err != nil {
		return Report{}, err
	}
	if err := c.frequent(ctx, q, row); err != nil {
		return Report{}, err
	}
	if err := c.proactive(ctx, q, row); err != nil {
		return Report{}, err
	}
	rep := Report{From: q.From.UTC(), To: q.To.UTC(), By: q.By, Rows: []Row{}, Total: Row{Key: "total"}}
	var leads []float64
	for _, r := range rows {
		leads = append(leads, r.Proactive.leads...)
		r.Proactive.finish()
		r.indices()
		rep.Rows = append(rep.Rows, *r)
		rep.Total.sum(r)
	}
	rep.Total.Proactive.leads = leads
	rep.Total.Proactive.finish()
	rep.Total.indices()
	sort.Slice(rep.Rows, func(i, j int) bool { return rep.Rows[i].Key < rep.Rows[j].Key })
	return rep, nil
}

func (r *Row) sum(o *Row) {
	r.CustomersServed += o.CustomersServed
	r.Interruptions += o.Interruptions
	r.CustomerMinutes += o.CustomerMinutes
	r.Momentary += o.Momentary
	r.Planned += o.Planned
	r.Unplanned += o.Unplanned
	r.FrequentOutageCustomers += o.FrequentOutageCustomers
	r.Proactive.Affected += o.Proactive.Affected
	r.Proactive.Notified += o.Proactive.Notified
	r.Proactive.Called += o.Proactive.Called
	r.Proactive.CalledBeforeSMS += o.Proactive.CalledBeforeSMS
}

// indices computes SAIFI, SAIDI, CAIDI and MAIFI, rounded to 4 places.
func (r *Row) indices() {
	r.CustomerMinutes = round(r.CustomerMinutes, 2)
	if r.CustomersServed > 0 {
		n := float64(r.CustomersServed)
		r.SAIFI = round(float64(r.Interruptions)/n, 4)
		r.SAIDI = round(r.CustomerMinutes/n, 4)
		r.MAIFI = round(float64(r.Momentary)/n, 4)
	}
	if r.Interruptions > 0 {
		r.CAIDI = round(r.CustomerMinutes/float64(r.Interruptions), 4)
	}
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func plannedFilter(p string) string {
	switch p {
	case "exclude":
		return " AND planned = 0"
	case "only":
		return " AND planned = 1"
	}
	return ""
}

// aggregate adds the interruption counts and minutes: whole days from
// care_daily, the period's edges and the open interruptions from the rows.
func (c *Care) aggregate(ctx context.Context, q Query, row func(grid, key string) *Row) error {
	from, to := q.From.UnixNano(), q.To.UnixNano()
	a, b := nextDay(from), dayOf(to)
	if a >= b {
		return c.aggregateRows(ctx, q, row, `start_ns >= $1 AND start_ns < $2`, from, to)
	}
	if err := c.aggregateDays(ctx, q, row, a, b); err != nil {
		return err
	}
	if err := c.aggregateRows(ctx, q, row, `(start_ns >= $1 AND start_ns < $2 OR start_ns >= $5 AND start_ns < $6)`, from, a, b, to); err != nil {
		return err
	}
	return c.aggregateRows(ctx, q, row, `end_ns = 0 AND start_ns >= $1 AND start_ns < $2`, a, b)
}

// aggregateRows adds the rows matching cond (over $1, $2 and, when given,
// $5, $6).
func (c *Care) aggregateRows(ctx context.Context, q Query, row func(grid, key string) *Row, cond string, bounds ...int64) error {
	args := []any{bounds[0], bounds[1], c.clk.Now().UnixNano(), int64(c.cfg.SustainedAfter)}
	for _, v := range bounds[2:] {
		args = append(args, v)
	}
	rows, err := c.db.QueryContext(ctx, `SELECT grid, k, planned,
			SUM(CASE WHEN d >= $4 THEN 1 ELSE 0 END), SUM(CASE WHEN d >= $4 THEN d ELSE 0 END),
			SUM(CASE WHEN d < $4 THEN 1 ELSE 0 END), COUNT(*), SUM(CASE WHEN sms_ns > 0 THEN 1 ELSE 0 END)
		FROM (SELECT grid, `+q.By+` AS k, planned, sms_ns, (CASE WHEN end_ns = 0 THEN $3 ELSE end_ns END) - start_ns AS d
			FROM care_interruptions WHERE `+cond+plannedFilter(q.Planned)+`) t
		GROUP BY grid, k, planned`, args...)
	if err != nil {
		return fmt.Errorf("cannot compute reliability: %w", err)
	}
	return addFigures(rows, row)
}

// aggregateDays adds care_daily's days [a, b).
func (c *Care) aggregateDays(ctx context.Context, q Query, row func(grid, key string) *Row, a, b int64) error {
	table := "care_daily_feeder"
	if q.By == "area" {
		table = "care_daily"
	}
	rows, err := c.db.QueryContext(ctx, `SELECT grid, `+q.By+`, planned, SUM(sustained), SUM(ns), SUM(momentary), SUM(affected), SUM(notified)
		FROM `+table+` WHERE day >= $1 AND day < $2`+plannedFilter(q.Planned)+` GROUP BY grid, `+q.By+`, planned`, a, b)
	if err != nil {
		return fmt.Errorf("cannot compute reliability: %w", err)
	}
	return addFigures(rows, row)
}

func addFigures(rows *sql.Rows, row func(grid, key string) *Row) error {
	defer rows.Close()
	for rows.Next() {
		var grid, key string
		var planned, sustained, ns, momentary, affected, notified int64
		if err := rows.Scan(&grid, &key, &planned, &sustained, &ns, &momentary, &affected, &notified); err != nil {
			return fmt.Errorf("cannot compute reliability: %w", err)
		}
		r := row(grid, key)
		if r == nil {
			continue
		}
		r.Interruptions += int(sustained)
		r.CustomerMinutes += float64(ns) / float64(time.Minute)
		r.Momentary += int(momentary)
		if planned != 0 {
			r.Planned += int(sustained)
		} else {
			r.Unplanned += int(sustained)
		}
		r.Proactive.Affected += int(affected)
		r.Proactive.Notified += int(notified)
	}
	return rows.Err()
}

// frequent counts the customers who reached the frequent-outage line in
// the period: an interruption of theirs in it was their Nth sustained one
// within the window, N at or over the line (every kind of outage counted).
// It reads the few rows at or over the line (care_interruptions_nth): the
// unary + keeps SQLite off the period's index, which holds every row.
func (c *Care) frequent(ctx context.Context, q Query, row func(grid, key string) *Row) error {
	rows, err := c.db.QueryContext(ctx, `SELECT grid, `+q.By+`, COUNT(DISTINCT account) FROM care_interruptions
		WHERE nth >= $1 AND +start_ns >= $2 AND +start_ns < $3 GROUP BY grid, `+q.By,
		c.cfg.FrequentOutage.Count, q.From.UnixNano(), q.To.UnixNano())
	if err != nil {
		return fmt.Errorf("cannot count frequent-outage customers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var grid, key string
		var n int
		if err := rows.Scan(&grid, &key, &n); err != nil {
			return fmt.Errorf("cannot count frequent-outage customers: %w", err)
		}
		if r := row(grid, key); r != nil {
			r.FrequentOutageCustomers += n
		}
	}
	return rows.Err()
}

// callSkew allows for meter clocks ahead of the hotline's: a call may
// carry a time a little before its interruption's start.
const callSkew = time.Hour

// proactive adds the calls: each customer's first call in each outage.
// A call about an interruption comes after it began, so only the calls
// from the period's start on are read (care_calls_at), not care.history's.
// Grouping by an expression of outage, not the column, keeps SQLite off
// care_calls_outage, which it would scan whole for the order of the groups.
func (c *Care) proactive(ctx context.Context, q Query, row func(grid, key string) *Row) error {
	rows, err := c.db.QueryContext(ctx, `SELECT i.grid, i.`+q.By+`, i.sms_ns, c.first
		FROM (SELECT outage || '' AS outage, account, MIN(at_ns) AS first FROM care_calls
			WHERE at_ns >= $3 AND outage <> '' GROUP BY outage || '', account) c
		JOIN care_interruptions i ON i.outage = c.outage AND i.account = c.account
		WHERE i.start_ns >= $1 AND i.start_ns < $2`+strings.ReplaceAll(plannedFilter(q.Planned), "planned", "i.planned"),
		q.From.UnixNano(), q.To.UnixNano(), q.From.Add(-callSkew).UnixNano())
	if err != nil {
		return fmt.Errorf("cannot read hotline calls: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var grid, key string
		var sms, first int64
		if err := rows.Scan(&grid, &key, &sms, &first); err != nil {
			return fmt.Errorf("cannot read hotline calls: %w", err)
		}
		if r := row(grid, key); r != nil {
			r.Proactive.add(true, sms, first)
		}
	}
	return rows.Err()
}

// OutageProactive is the proactive block of one outage: its customers in
// grids (nil: all), whether the SMS reached them before they called.
func (c *Care) OutageProactive(ctx context.Context, id string, grids []string) (Proactive, error) {
	var p Proactive
	rows, err := c.db.QueryContext(ctx, `SELECT i.grid, i.sms_ns, COALESCE(c.first, 0)
		FROM care_interruptions i LEFT JOIN (SELECT account, MIN(at_ns) AS first FROM care_calls WHERE outage = $1 GROUP BY account) c
		ON c.account = i.account WHERE i.outage = $1`, id)
	if err != nil {
		return p, fmt.Errorf("cannot read the calls of %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var grid string
		var sms, first int64
		if err := rows.Scan(&grid, &sms, &first); err != nil {
			return p, fmt.Errorf("cannot read the calls of %s: %w", id, err)
		}
		if grids != nil && !slices.Contains(grids, grid) {
			continue
		}
		p.Affected++
		if sms > 0 {
			p.Notified++
		}
		p.add(first > 0, sms, first)
	}
	p.finish()
	return p, rows.Err()
}
