package care

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
)

// FollowupCustomer is one customer a grid manager should call back after a
// restoration (回访): frequent-outage and complaint-risk customers.
type FollowupCustomer struct {
	Account    string     `json:"account"`
	Name       string     `json:"name"`
	Grid       string     `json:"grid"`
	Area       string     `json:"area"`
	Class      string     `json:"class"`
	Critical   bool       `json:"critical"`
	Tags       []string   `json:"tags"`
	Sustained  int        `json:"sustained"` // sustained interruptions within the frequent-outage window
	Called     bool       `json:"called"`    // called the hotline during this outage
	Minutes    int        `json:"minutes"`   // without power in this outage
	RestoredAt *time.Time `json:"restored_at"`
}

// classRank puts life-support, high-risk and important customers first,
// in that order, as the workspace does.
func classRank(class string) int {
	switch contacts.Class(class) {
	case contacts.LifeSupport:
		return 0
	case contacts.HighRisk:
		return 1
	case contacts.Important:
		return 2
	}
	return 3
}

// Followup lists the customers of outage id to call back, in grids (nil:
// all), critical ones first, then by how often they were out.
func (c *Care) Followup(ctx context.Context, id string, grids []string) ([]FollowupCustomer, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT account, grid, area, class, start_ns, end_ns FROM care_interruptions WHERE outage = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("cannot read the customers of %s: %w", id, err)
	}
	var list []FollowupCustomer
	for rows.Next() {
		var fc FollowupCustomer
		var start, end int64
		if err := rows.Scan(&fc.Account, &fc.Grid, &fc.Area, &fc.Class, &start, &end); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cannot read the customers of %s: %w", id, err)
		}
		if grids != nil && !slices.Contains(grids, fc.Grid) {
			continue
		}
		stop := c.clk.Now().UnixNano()
		if end != 0 {
			stop = end
			t := time.Unix(0, end).UTC()
			fc.RestoredAt = &t
		}
		fc.Minutes = int((stop - start) / int64(time.Minute))
		list = append(list, fc)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	accts := make([]string, len(list))
	for i, fc := range list {
		accts[i] = fc.Account
	}
	f, err := c.bulk(ctx, accts)
	if err != nil {
		return nil, err
	}
	called, err := c.calledIn(ctx, id)
	if err != nil {
		return nil, err
	}
	out := []FollowupCustomer{}
	for _, fc := range list {
		fc.Tags = c.tagsOf(f, fc.Account)
		if len(fc.Tags) == 0 {
			continue
		}
		fc.Sustained, fc.Called = f.sustained[fc.Account], called[fc.Account]
		fc.Critical = contacts.Class(fc.Class).Critical()
		if a, ok := c.dir.Account(fc.Account); ok {
			fc.Name = a.Name
		}
		out = append(out, fc)
	}
	slices.SortFunc(out, func(a, b FollowupCustomer) int {
		return cmp.Or(cmp.Compare(classRank(a.Class), classRank(b.Class)), b.Sustained-a.Sustained, strings.Compare(a.Account, b.Account))
	})
	return out, nil
}

func (c *Care) calledIn(ctx context.Context, id string) (map[string]bool, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT DISTINCT account FROM care_calls WHERE outage = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("cannot read the calls of %s: %w", id, err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out[a] = true
	}
	return out, rows.Err()
}

// followupNames is how many customers a follow-up SMS names; the list
// itself is on the page and in the API.
const followupNames = 5

// sendFollowups sends each grid manager of the records just restored the
// list of their customers to call back, once per record and grid.
func (c *Care) sendFollowups(ctx context.Context, ids []string, now time.Time) error {
	if c.sink == nil {
		return nil
	}
	for _, id := range ids {
		list, err := c.Followup(ctx, id, nil)
		if err != nil {
			return err
		}
		byGrid := map[string][]FollowupCustomer{}
		var grids []string
		for _, fc := range list {
			if byGrid[fc.Grid] == nil {
				grids = append(grids, fc.Grid)
			}
			byGrid[fc.Grid] = append(byGrid[fc.Grid], fc)
		}
		if err := c.enqueueFollowups(ctx, id, grids, byGrid, now); err != nil {
			return err
		}
	}
	return nil
}

func (c *Care) enqueueFollowups(ctx context.Context, id string, grids []string, byGrid map[string][]FollowupCustomer, now time.Time) error {
	unlock := c.db.LockWrite(false) // behind a waiting rules commit, as write
	defer unlock()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin care transaction: %w", err)
	}
	defer tx.Rollback()
	var intents []event.Intent
	for _, g := range grids {
		info, ok := c.dir.Grid(g)
		if !ok || info.ManagerPhone == "" {
			continue
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO care_followups (outage, grid, at_ns) VALUES ($1, $2, $3) ON CONFLICT (outage, grid) DO NOTHING`,
			id, g, now.UnixNano())
		if err != nil {
			return fmt.Errorf("cannot record a follow-up list: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			continue
		}
		l := byGrid[g]
		var names []string
		crit := 0
		for i, fc := range l {
			if fc.Critical {
				crit++
			}
			if i < followupNames {
				names = append(names, fmt.Sprintf("%s(%d)", fc.Account, fc.Sustained))
			}
		}
		// The manager_digest template words it in the manager's language:
		// the first accounts with their sustained interruptions, and
		// whether more follow.
		vars := map[string]string{"grid": g, "manager": info.Manager, "summary": strings.Join(names, ", "), "count": strconv.Itoa(len(l)),
			"critical_count": strconv.Itoa(crit), "outages": id, "followup": "true"}
		if len(l) > followupNames {
			vars["more"] = "true"
		}
		intents = append(intents, event.Intent{Key: "followup/" + id + "/" + g, Kind: event.KindManagerDigest,
			Grid: g, To: info.ManagerPhone, Ref: id, Vars: vars, Priority: event.PriorityOutage, CreatedAt: now})
	}
	if len(intents) > 0 {
		if err := c.sink.Enqueue(ctx, tx, intents); err != nil {
			return fmt.Errorf("cannot enqueue follow-up lists: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit follow-up lists: %w", err)
	}
	metricFollowups.Add(float64(len(intents)))
	return nil
}
