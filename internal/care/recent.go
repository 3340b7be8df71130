package care

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// recentIndex holds each customer's sustained interruptions within the
// frequent-outage window, for the outage SMS (RecentOutages) to read
// without a query per message: a storm renders half a million.
type recentIndex struct {
	mu  sync.RWMutex
	acc map[string]map[string]int64 // account → outage → start
}

func (r *recentIndex) init() { r.acc = map[string]map[string]int64{} }

// loadRecent reads the index from the store.
func (c *Care) loadRecent(ctx context.Context) error {
	now := c.clk.Now()
	since := now.Add(-time.Duration(c.cfg.FrequentOutage.Within)).UnixNano()
	rows, err := c.db.QueryContext(ctx, `SELECT account, outage, start_ns FROM care_interruptions
		WHERE start_ns >= $1 AND (CASE WHEN end_ns = 0 THEN $2 ELSE end_ns END) - start_ns >= $3`,
		since, now.UnixNano(), int64(c.cfg.SustainedAfter))
	if err != nil {
		return fmt.Errorf("cannot read recent interruptions: %w", err)
	}
	defer rows.Close()
	acc := map[string]map[string]int64{}
	for rows.Next() {
		var a, o string
		var st int64
		if err := rows.Scan(&a, &o, &st); err != nil {
			return fmt.Errorf("cannot read recent interruptions: %w", err)
		}
		if acc[a] == nil {
			acc[a] = map[string]int64{}
		}
		acc[a][o] = st
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read recent interruptions: %w", err)
	}
	c.recent.mu.Lock()
	c.recent.acc = acc
	c.recent.mu.Unlock()
	return nil
}

// noteRecent puts a row the projection wrote into the index once it is
// sustained.
func (c *Care) noteRecent(it *interruption) {
	end := it.end
	if end == 0 {
		end = c.clk.Now().UnixNano()
	}
	if end-it.start < int64(c.cfg.SustainedAfter) {
		return
	}
	c.recent.mu.Lock()
	defer c.recent.mu.Unlock()
	m := c.recent.acc[it.account]
	if m == nil {
		m = map[string]int64{}
		c.recent.acc[it.account] = m
	}
	m[it.outage] = it.start
	for _, id := range c.p.deleted {
		delete(m, id)
	}
}

// RecentOutages is how many sustained interruptions account has had within
// the frequent-outage window, counting outage ref (or one of its aliases)
// as one of them whether or not the projection has seen it yet.
func (c *Care) RecentOutages(account string, refs ...string) int {
	since := c.clk.Now().Add(-time.Duration(c.cfg.FrequentOutage.Within)).UnixNano()
	c.recent.mu.RLock()
	defer c.recent.mu.RUnlock()
	n := 1
	for o, st := range c.recent.acc[account] {
		if st >= since && !slices.Contains(refs, o) {
			n++
		}
	}
	return n
}

// OutageVars adds recent_outages to an outage SMS's vars when the outage
// is, for one of its customers, at or over the frequent-outage line: the
// template then says so and apologises. notify calls it as it renders.
func (c *Care) OutageVars(kind, ref string, accounts []string, vars map[string]string) {
	if kind != "outage" {
		return
	}
	refs := append([]string{ref}, strings.Split(vars["_aliases"], ",")...)
	n := 0
	for _, a := range accounts {
		n = max(n, c.RecentOutages(a, refs...))
	}
	if n >= c.cfg.FrequentOutage.Count {
		vars["recent_outages"] = strconv.Itoa(n)
		vars["recent_days"] = strconv.Itoa(int(time.Duration(c.cfg.FrequentOutage.Within) / Day))
		metricApologies.Inc()
	}
}

// number sets it's nth once it is sustained: 1 plus the customer's other
// sustained interruptions that began within the window before it.
func (c *Care) number(it *interruption, now int64) {
	end := it.end
	if end == 0 {
		end = now
	}
	if it.nth != 0 || end-it.start < int64(c.cfg.SustainedAfter) {
		return
	}
	since := it.start - int64(c.cfg.FrequentOutage.Within)
	c.recent.mu.RLock()
	defer c.recent.mu.RUnlock()
	it.nth = 1
	for o, st := range c.recent.acc[it.account] {
		if o != it.outage && st > since && st <= it.start {
			it.nth++
		}
	}
}
