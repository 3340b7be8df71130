package rules

import (
	"fmt"
	"slices"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
)

// Outage record statuses (docs/interfaces.md §6), plus merged: an AMI record absorbed
// into an OMS record, kept only so its id still resolves.
const (
	statusScheduled = "scheduled"
	statusActive    = "active"
	statusRestored  = "restored"
	statusCancelled = "cancelled"
	statusMerged    = "merged"
)

// Ledger flags: what an account was told about one outage.
const (
	lNotified uint8 = 1 << iota // outage
	lPlanned                    // planned_notice
	lRestored                   // restored
	lReminded                   // planned_notice reminder
	lETR                        // told an ETR (in outage, planned_notice or etr_update)
)

// outage is one outage record, seen by meters (ami), the OMS, or both. The
// exported fields are its stored form; members and ledger are rebuilt on load.
type outage struct {
	ID            string     `json:"id"`
	Aliases       []string   `json:"aliases,omitempty"`
	Kind          string     `json:"kind"`
	Source        string     `json:"source"`
	Status        string     `json:"status"`
	Areas         []string   `json:"areas,omitempty"` // whole transformer areas in scope
	Feeders       []string   `json:"feeders,omitempty"`
	Meters        []string   `json:"meters,omitempty"` // single meters in scope
	Start         *time.Time `json:"start,omitempty"`
	ETR           *time.Time `json:"etr,omitempty"`
	ETRTold       *time.Time `json:"etr_told,omitempty"`
	RestoredAt    *time.Time `json:"restored_at,omitempty"`
	OMSRestored   bool       `json:"oms_restored,omitempty"`
	OMSUpdated    time.Time  `json:"oms_updated"`
	Cause         string     `json:"cause,omitempty"`
	ReminderDue   *time.Time `json:"reminder_due,omitempty"`
	ReminderSent  bool       `json:"reminder_sent,omitempty"`
	ConfirmedBy   string     `json:"confirmed_by,omitempty"`
	ConfirmedAt   *time.Time `json:"confirmed_at,omitempty"`
	ConfirmReason string     `json:"confirm_reason,omitempty"`
	ReportedOut   []string   `json:"reported_out,omitempty"`
	Created       time.Time  `json:"created"`
	Seq           int64      `json:"seq"` // creation order, so a reload rebuilds membership the same way
	// Closed is the record's view as it closed (restored, cancelled): its
	// meters may later join a newer outage, after which counting them
	// against this record would show 0 affected. Nil while live.
	Closed *closedView `json:"closed,omitempty"`

	idx     int32
	members []int32
	ledger  map[string]uint8
	dirty   bool
}

func (r *outage) live() bool { return r.Status == statusActive || r.Status == statusScheduled }

// closedView is what a closed record shows: its counts and areas, and
// each grid's for that grid's managers.
type closedView struct {
	Counts Counts              `json:"counts"`
	Areas  []string            `json:"areas"`
	Grids  map[string]gridView `json:"grids,omitempty"`
}

// gridView is one grid's share of an outage.
type gridView struct {
	Counts Counts   `json:"counts"`
	Areas  []string `json:"areas"`
}

func (r *outage) start() int64 {
	if r.Start == nil {
		return 0
	}
	return r.Start.UnixNano()
}

func tptr(t time.Time) *time.Time { return &t }

func fmtTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

func (e *Engine) touch(r *outage) {
	if !r.dirty {
		r.dirty = true
		e.dirtyOutages = append(e.dirtyOutages, r.idx)
	}
}

func (e *Engine) setLedger(r *outage, acct string, f uint8) {
	r.ledger[acct] |= f
	e.dirtyLedger[r.idx] = struct{}{}
}

// addRecord registers a new record. Lock: e.mu held.
func (e *Engine) addRecord(r *outage) *outage {
	r.idx = int32(len(e.outages))
	e.seq++
	r.Seq = e.seq
	r.ledger = map[string]uint8{}
	e.outages = append(e.outages, r)
	e.outageIdx[r.ID] = r.idx
	e.touch(r)
	return r
}

// join makes meter i a member of r. It reports false if it already was.
// Lock: e.mu held.
func (e *Engine) join(r *outage, i int32) bool {
	m := &e.meters[i]
	if m.outage == r.idx {
		return false
	}
	m.outage = r.idx
	m.flags &^= fDarkSeen
	if m.st == stDark {
		m.flags |= fDarkSeen
	}
	if m.seen > m.saved && m.seen >= r.start() {
		// seen since the outage began: the record decides on it (eligible,
		// the verification), so it is stored with the record
		e.markDirty(i)
	}
	r.members = append(r.members, i)
	return true
}

// liveForAMI reports whether darkness seen by meters joins record o: an
// active record, or a scheduled one about to start.
func (e *Engine) liveForAMI(o int32, now time.Time) bool {
	r := e.outages[o]
	switch r.Status {
	case statusActive:
		return true
	case statusScheduled:
		return r.Start != nil && !now.Before(r.Start.Add(-e.cfg.Reorder))
	}
	return false
}

// areaDark places meters newly confirmed dark in area a into an outage
// record, widens it to the whole area once AreaDarkRatio of the area is
// dark, and tells the newly affected. Lock: e.mu held.
func (e *Engine) areaDark(a int32, confirmed []int32) {
	now := e.clk.Now()
	ar := &e.areas[a]
	var r *outage
	for _, i := range confirmed {
		if o := e.meters[i].outage; o >= 0 && e.liveForAMI(o, now) {
			r = e.outages[o]
			break
		}
	}
	if r == nil && ar.rec >= 0 && e.liveForAMI(ar.rec, now) {
		r = e.outages[ar.rec]
	}
	if r == nil {
		if !slices.ContainsFunc(confirmed, func(i int32) bool { return !e.meters[i].tripped() }) {
			return // a tripped meter's gasp counts toward its area but opens no outage
		}
		r = e.newAMIRecord(ar.name, confirmed)
	}
	if ar.rec != r.idx {
		ar.rec = r.idx
		e.stormHits = append(e.stormHits, now)
	}
	if r.Source == "oms" {
		r.Source = "both"
	}
	if r.Status == statusScheduled {
		r.Status = statusActive
	}
	e.touch(r)
	var newly []int32
	for _, i := range confirmed {
		e.meters[i].flags |= fDarkSeen
		if e.join(r, i) {
			r.Meters = append(r.Meters, e.meters[i].id)
			newly = append(newly, i)
		}
	}
	if len(ar.meters) > 0 && !slices.Contains(r.Areas, ar.name) && float64(ar.dark) >= e.cfg.AreaDarkRatio*float64(len(ar.meters)) {
		r.Areas = append(r.Areas, ar.name)
		for _, i := range ar.meters {
			if e.join(r, i) {
				newly = append(newly, i)
			}
		}
	}
	e.tell(r, newly)
}

// newAMIRecord opens an outage record for darkness first seen by meters.
// Lock: e.mu held.
func (e *Engine) newAMIRecord(area string, confirmed []int32) *outage {
	start := e.meters[confirmed[0]].since
	for _, i := range confirmed {
		start = min(start, e.meters[i].since)
	}
	st := time.Unix(0, start).UTC()
	id := fmt.Sprintf("AMI-%s-%s", area, st.Format("20060102T150405"))
	for n := 2; ; n++ {
		if _, dup := e.outageIdx[id]; !dup {
			break
		}
		id = fmt.Sprintf("AMI-%s-%s-%d", area, st.Format("20060102T150405"), n)
	}
	return e.addRecord(&outage{ID: id, Kind: event.OutageFault, Source: "ami", Status: statusActive,
		Start: tptr(st), Created: e.clk.Now()})
}

// eligible reports whether the customer of meter i may be told of an outage
// of r: a known meter, not tripped, not cut off for arrears, and not seen
// powered since the outage began.
func (e *Engine) eligible(r *outage, i int32) bool {
	m := &e.meters[i]
	if !m.known || m.tripped() {
		return false
	}
	if m.st == stPowered && r.Start != nil && m.seen >= r.start() {
		return false
	}
	return !e.disconnected(m.account)
}

// tell sends an outage intent to each newly affected customer of active
// record r who has not been told of it, and notes them for their grid's
// manager digest. Lock: e.mu held.
func (e *Engine) tell(r *outage, meters []int32) {
	if r.Status != statusActive {
		return
	}
	now := e.clk.Now()
	if r.ETRTold == nil && r.ETR != nil {
		r.ETRTold = r.ETR
		e.touch(r)
	}
	// The intents of one area share their vars (nothing changes an
	// intent's vars once emitted): a storm tells ~500k customers at once.
	varsOf := map[int32]map[string]string{}
	for _, i := range meters {
		m := &e.meters[i]
		if !e.eligible(r, i) || r.ledger[m.account]&(lNotified|lPlanned) != 0 {
			continue
		}
		fl := lNotified
		if r.ETR != nil {
			fl |= lETR
		}
		e.setLedger(r, m.account, fl)
		area := ""
		if m.area >= 0 {
			area = e.areas[m.area].name
		}
		vars, ok := varsOf[m.area]
		if !ok {
			vars = map[string]string{"outage_id": r.ID, "area": area, "start": fmtTime(r.Start), "kind": r.Kind}
			if r.ETR != nil {
				vars["etr"] = fmtTime(r.ETR)
			}
			if r.Cause != "" {
				vars["cause"] = r.Cause
			}
			varsOf[m.area] = vars
		}
		e.emit(event.Intent{Key: "outage/" + r.ID + "/" + m.account, Kind: event.KindOutage,
			Account: m.account, Grid: e.gridOf(m), Ref: r.ID, Vars: vars, Priority: priority(e.classOf(m)), CreatedAt: now})
		e.digestAdd(m, r, area)
	}
}

// meterIsBack reports whether meter i counts as restored in r: powered after
// being seen dark, a power_on since the outage began, or a reading after the
// outage's restoration.
func (e *Engine) meterIsBack(r *outage, i int32) bool {
	m := &e.meters[i]
	if m.st != stPowered {
		return false
	}
	if m.flags&fDarkSeen != 0 || (r.Start != nil && m.onTS > r.start()) {
		return true
	}
	return r.RestoredAt != nil && m.seen > r.RestoredAt.UnixNano()
}

// meterBack sends restored to the customer of meter i once every meter of
// theirs in the outage is back. Lock: e.mu held.
func (e *Engine) meterBack(i int32) {
	m := &e.meters[i]
	r := e.outages[m.outage]
	e.touched[r.idx] = struct{}{}
	if !m.known || r.Status == statusScheduled || r.Status == statusCancelled {
		return
	}
	fl := r.ledger[m.account]
	if fl&(lNotified|lPlanned) == 0 || fl&lRestored != 0 || !e.meterIsBack(r, i) {
		return
	}
	if acct, ok := e.dir.Account(m.account); ok && len(acct.Meters) > 1 {
		for _, id := range acct.Meters {
			if j, ok := e.meterIdx[id]; ok && j != i && e.meters[j].outage == r.idx && !e.meterIsBack(r, j) {
				return
			}
		}
	}
	e.setLedger(r, m.account, lRestored)
	vars := map[string]string{"outage_id": r.ID, "start": fmtTime(r.Start),
		"restored_at": time.Unix(0, m.seen).UTC().Format(time.RFC3339)}
	if m.area >= 0 {
		vars["area"] = e.areas[m.area].name
	}
	e.emit(event.Intent{Key: "restored/" + r.ID + "/" + m.account, Kind: event.KindRestored,
		Account: m.account, Grid: e.gridOf(m), Ref: r.ID, Aliases: slices.Clone(r.Aliases), Vars: vars, Priority: priority(e.classOf(m)), CreatedAt: e.clk.Now()})
}

// settle works out the restoration of the records touched in this batch.
// An AMI record is restored (RestoredAt) once none of its meters is dark by
// its own report; the OMS says when for its records. The record closes when
// every meter of it is verified back (or by Confirm): a meter with no news
// since the outage began counts as still dark.
// Lock: e.mu held.
func (e *Engine) settle() {
	for o := range e.touched {
		r := e.outages[o]
		if r.Status != statusActive {
			e.closedBack(r)
			continue
		}
		if r.RestoredAt == nil && r.Source == "ami" {
			e.amiRestored(r)
		}
		if r.RestoredAt == nil || e.anyDark(r) {
			continue
		}
		r.Status = statusRestored
		e.touch(r)
	}
	clear(e.touched)
}

// closedBack counts the customers of closed record r who came back since
// it closed (a dispatcher confirmed it while some were dark). Its counts
// only improve: a meter that goes dark again belongs to a newer outage.
// Lock: e.mu held.
func (e *Engine) closedBack(r *outage) {
	old := r.Closed
	if old == nil || r.Status == statusMerged {
		return
	}
	c := e.count(r, old.Grids != nil)
	if !improve(&old.Counts, c.Counts) {
		return
	}
	for g, gv := range old.Grids {
		if now, ok := c.Grids[g]; ok && improve(&gv.Counts, now.Counts) {
			old.Grids[g] = gv
		}
	}
	e.touch(r)
}

// improve moves the kept counts old by the customers restored since, and
// reports whether there were any.
func improve(old *Counts, now Counts) bool {
	if now.Affected != old.Affected || now.Restored <= old.Restored {
		return false
	}
	old.Dark = max(0, old.Dark-(now.Restored-old.Restored))
	old.Restored = now.Restored
	return true
}

// amiRestored sets an AMI record's restoration time when the last meter
// that reported darkness came back, and tells whoever is verified back.
// Lock: e.mu held.
func (e *Engine) amiRestored(r *outage) {
	var last int64
	for _, i := range r.members {
		m := &e.meters[i]
		if m.outage != r.idx || m.tripped() {
			continue
		}
		if m.st == stDark {
			return
		}
		if m.flags&fDarkSeen != 0 {
			last = max(last, m.seen)
		}
	}
	at := e.clk.Now()
	if last > 0 {
		at = time.Unix(0, last).UTC()
	}
	r.RestoredAt = &at
	e.touch(r)
	for _, i := range r.members {
		if e.meters[i].outage == r.idx {
			e.meterBack(i)
		}
	}
}

// anyDark reports whether a meter of r is still dark (verdict).
// Lock: e.mu held.
func (e *Engine) anyDark(r *outage) bool {
	for _, i := range r.members {
		if e.meters[i].outage == r.idx && e.meterVerdict(r, i) == "dark" {
			return true
		}
	}
	return false
}

// priority is an outage intent's priority for a customer of class:
// PriorityCritical for the classes served first.
func priority(class string) event.Priority {
	if contacts.Class(class).Critical() {
		return event.PriorityCritical
	}
	return event.PriorityOutage
}
