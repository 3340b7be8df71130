package care

import (
	"slices"
	"strings"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/rules"
)

// The projection turns outage records and meter changes into one row per
// customer and outage (care_interruptions). A customer's interruption runs
// from the earliest of its meters' own dark times to the last of their
// restorations, as the meter log shows them; a meter with no darkness of
// its own in the record (area inference, an OMS outage without meter
// evidence) counts from the record's start to its restoration.

// darkSlack is how long before a record's start a meter's own darkness may
// begin and still be taken for that record's (an OMS record starts when
// the OMS says; the meters may have gasped earlier).
const darkSlack = 30 * time.Minute

// span is a meter's latest dark interval as the meter changes show it.
type span struct{ dark, back int64 } // back 0 = still dark

// interruption is one customer's row. Writer only.
type interruption struct {
	outage, account, grid, feeder, area, class string
	planned                                    bool
	start, end                                 int64 // end 0 = open
	open                                       []string
	reported                                   bool
	sms                                        int64
	nth                                        int      // its number among the customer's sustained interruptions within the window; 0 = not counted yet
	rolled                                     *contrib // what it added to care_daily; nil while open
	dirty                                      bool
}

// recState is what the projection holds of one record.
type recState struct {
	stamp rules.RecordStamp
	rec   rules.Record
	accts map[string]*interruption
	live  bool  // live at the last look
	smsAt int64 // when fillSMS last read its messages (Unix ns); 0: never
}

// projection is the follower's state. Writer (Run's goroutine) only.
type projection struct {
	recs     map[string]*recState
	spans    map[string]span
	openBy   map[string][]*interruption // meter → open interruptions holding it
	dirty    []*interruption
	recSeq   int64
	meterSeq int64
	deleted  []string               // outage ids whose rows moved to another record (merged)
	deltas   map[dayKey]*dayFigures // care_daily changes of this step
	steps    int
}

func newProjection() *projection {
	return &projection{recs: map[string]*recState{}, spans: map[string]span{}, openBy: map[string][]*interruption{}}
}

func (p *projection) touch(it *interruption) {
	if !it.dirty {
		it.dirty = true
		p.dirty = append(p.dirty, it)
	}
}

// meterChange applies one meter's new state.
func (p *projection) meterChange(ch rules.MeterChange, restoredAt func(outage string) int64) {
	switch {
	case ch.Dark:
		if s, ok := p.spans[ch.Meter]; !ok || s.back != 0 || s.dark != ch.Since {
			p.spans[ch.Meter] = span{dark: ch.Since}
		}
	case ch.On:
		if s, ok := p.spans[ch.Meter]; ok && s.back == 0 && ch.Since > s.dark {
			p.spans[ch.Meter] = span{dark: s.dark, back: ch.Since}
		}
		for _, it := range slices.Clone(p.openBy[ch.Meter]) {
			switch {
			case ch.Since > it.start:
				p.closeMeter(it, ch.Meter, ch.Since)
			case restoredAt(it.outage) > 0 && ch.Seen >= restoredAt(it.outage):
				p.closeMeter(it, ch.Meter, restoredAt(it.outage))
			}
		}
	}
}

// closeMeter marks meter m of it back at t; it closes with its last meter.
func (p *projection) closeMeter(it *interruption, m string, t int64) {
	i := slices.Index(it.open, m)
	if i < 0 {
		return
	}
	it.open = slices.Delete(it.open, i, i+1)
	it.end = max(it.end, t, it.start)
	if len(it.open) > 0 {
		it.end = 0
	}
	p.unlinkOpen(it, m)
	p.touch(it)
}

func (p *projection) unlinkOpen(it *interruption, m string) {
	l := p.openBy[m]
	if i := slices.Index(l, it); i >= 0 {
		l = slices.Delete(l, i, i+1)
	}
	if len(l) == 0 {
		delete(p.openBy, m)
	} else {
		p.openBy[m] = l
	}
}

// Directory is what care reads of the customer registry
// (*contacts.Registry implements it).
type Directory interface {
	Meter(id string) (contacts.MeterInfo, bool)
	AreaMeters(area string) []string
	FeederAreas(f string) []string
	Account(acct string) (contacts.Account, bool)
	Grid(g string) (contacts.GridInfo, bool)
	Grids() []string
	Generation() uint64
}

// members lists r's meters: its single meters, its areas' and its feeders'.
func members(dir Directory, r *rules.Record) []string {
	seen := map[string]bool{}
	var out []string
	add := func(ms []string) {
		for _, m := range ms {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	add(r.Meters)
	for _, a := range r.Areas {
		add(dir.AreaMeters(a))
	}
	for _, f := range r.Feeders {
		for _, a := range dir.FeederAreas(f) {
			add(dir.AreaMeters(a))
		}
	}
	return out
}

// applyRecord brings the interruptions of rs's record up to date; rs.accts
// holds the rows the store already had for it (loadRows).
func (p *projection) applyRecord(dir Directory, rs *recState, now int64) {
	r := &rs.rec
	if r.Merged() || r.Start == nil || r.Status == "scheduled" || r.Status == "cancelled" {
		return
	}
	start := r.Start.UnixNano()
	if start > now {
		return
	}
	reported := map[string]bool{}
	for _, a := range r.ReportedOut {
		reported[a] = true
	}
	for _, m := range members(dir, r) {
		info, ok := dir.Meter(m)
		if !ok || info.Account == "" {
			continue
		}
		it := rs.accts[info.Account]
		s, hasSpan := p.spans[m]
		own := hasSpan && s.dark >= start-int64(darkSlack) && (s.back == 0 || s.back > start)
		if it == nil {
			it = &interruption{outage: r.ID, account: info.Account, grid: info.Grid, feeder: info.Feeder,
				area: info.Area, class: string(info.Class), planned: r.Kind == event.OutagePlanned, start: start}
			if own {
				it.start = s.dark
			}
			rs.accts[info.Account] = it
			p.openMeter(it, m, own, s)
			p.touch(it)
		} else if own && it.end == 0 && !slices.Contains(it.open, m) && s.back == 0 {
			p.openMeter(it, m, true, s)
		}
		if reported[info.Account] && !it.reported {
			it.reported = true
			p.touch(it)
		}
	}
	if end := closedAt(r); end > 0 {
		for _, it := range rs.accts {
			for _, m := range slices.Clone(it.open) {
				if s, ok := p.spans[m]; ok && s.back == 0 && s.dark >= start-int64(darkSlack) {
					continue // still dark: a nested outage, closed by its meter
				}
				p.closeMeter(it, m, end)
			}
		}
	}
}

// openMeter adds meter m to it: open unless its own span already ended.
func (p *projection) openMeter(it *interruption, m string, own bool, s span) {
	if own && s.back != 0 {
		if len(it.open) == 0 {
			it.end = max(it.end, s.back)
		}
		it.start = min(it.start, s.dark)
		return
	}
	if own {
		it.start = min(it.start, s.dark)
	}
	it.open = append(it.open, m)
	it.end = 0
	p.openBy[m] = append(p.openBy[m], it)
}

// closedAt is when r's power came back as the record says: its
// restoration, else a dispatcher's confirmation; 0 while it has neither.
func closedAt(r *rules.Record) int64 {
	switch {
	case r.RestoredAt != nil:
		return r.RestoredAt.UnixNano()
	case r.ConfirmedAt != nil && r.Status == "restored":
		return r.ConfirmedAt.UnixNano()
	}
	return 0
}

// absorb moves the rows of the merged records named in rs's aliases into
// rs (an AMI record the OMS record took over).
func (p *projection) absorb(rs *recState) {
	for _, alias := range rs.rec.Aliases {
		old := p.recs[alias]
		if old == nil {
			continue
		}
		for acct, it := range old.accts {
			cur := rs.accts[acct]
			if cur == nil {
				it.outage = rs.rec.ID
				rs.accts[acct] = it
				p.touch(it)
				continue
			}
			cur.start = min(cur.start, it.start)
			for _, m := range it.open {
				p.unlinkOpen(it, m)
				if !slices.Contains(cur.open, m) {
					cur.open = append(cur.open, m)
					p.openBy[m] = append(p.openBy[m], cur)
				}
			}
			if len(cur.open) > 0 {
				cur.end = 0
			} else {
				cur.end = max(cur.end, it.end)
			}
			cur.sms = minNonZero(cur.sms, it.sms)
			if it.rolled != nil {
				p.delta(it.rolled, -1) // its row goes; cur's counts it
			}
			p.touch(cur)
		}
		delete(p.recs, alias)
		p.deleted = append(p.deleted, alias)
	}
}

func minNonZero(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// done reports whether rs needs no more looks: closed, every row closed.
func (rs *recState) done() bool {
	if rs.live || closedAt(&rs.rec) == 0 && rs.rec.Status != "cancelled" && !rs.rec.Merged() {
		return false
	}
	for _, it := range rs.accts {
		if it.end == 0 {
			return false
		}
	}
	return true
}

func (it *interruption) values() []any {
	return []any{it.outage, it.account, it.grid, it.feeder, it.area, it.class, boolInt(it.planned),
		it.start, it.end, strings.Join(it.open, ","), boolInt(it.reported), it.sms, int64(it.nth)}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
