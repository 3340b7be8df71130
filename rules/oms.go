package rules

import (
	"slices"
	"strconv"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// applyOMS applies one OMS message. The latest updated_at wins: an older
// or repeated message changes nothing. Lock: e.mu held.
func (e *Engine) applyOMS(o *event.OMSOutage) {
	if o.OutageID == "" {
		return
	}
	var r *outage
	if idx, ok := e.outageIdx[o.OutageID]; ok {
		r = e.outages[idx]
		if !o.UpdatedAt.After(r.OMSUpdated) {
			return
		}
	} else {
		r = e.addRecord(&outage{ID: o.OutageID, Source: "oms", Created: e.clk.Now()})
	}
	e.touch(r)
	r.OMSUpdated = o.UpdatedAt
	if o.Kind != "" {
		r.Kind = o.Kind
	}
	if r.Kind == "" {
		r.Kind = event.OutageFault
	}
	if o.Cause != "" {
		r.Cause = o.Cause
	}
	if o.Start != nil {
		r.Start = tptr(*o.Start)
	}
	if o.ETR != nil {
		r.ETR = tptr(*o.ETR)
	}
	switch o.Status {
	case event.StatusScheduled:
		e.omsScheduled(r, o)
	case event.StatusETRUpdated:
		if r.Status == statusScheduled { // a planned outage's end moved before it began
			e.omsScope(r, o)
			e.etrCheck(r)
			return
		}
		e.omsStarted(r, o)
	case event.StatusStarted:
		e.omsStarted(r, o)
	case event.StatusRestored:
		e.omsRestored(r, o)
	case event.StatusCancelled:
		r.Status = statusCancelled
	}
}

// omsScope adds o's areas, feeders and meters to r's scope and makes their
// meters members; an AMI record already holding any of them is absorbed.
// Lock: e.mu held.
func (e *Engine) omsScope(r *outage, o *event.OMSOutage) []int32 {
	var meters []int32
	addArea := func(name string) {
		a := e.area(name)
		meters = append(meters, e.areas[a].meters...)
	}
	r.Areas, r.Feeders, r.Meters = union(r.Areas, o.Areas), union(r.Feeders, o.Feeders), union(r.Meters, o.Meters)
	for _, a := range o.Areas {
		addArea(a)
	}
	for _, f := range o.Feeders {
		for _, a := range e.dir.FeederAreas(f) {
			addArea(a)
		}
	}
	for _, id := range o.Meters {
		meters = append(meters, e.meter(id, ""))
	}
	now := e.clk.Now()
	for _, i := range meters {
		if o := e.meters[i].outage; o >= 0 && o != r.idx {
			other := e.outages[o]
			if other.Source == "ami" && e.liveForAMI(o, now) {
				e.absorb(r, other)
				continue
			}
			if other.live() {
				continue // another OMS outage holds it and told its customers
			}
		}
		e.join(r, i)
	}
	for _, a := range r.Areas {
		ar := &e.areas[e.area(a)]
		counted := ar.rec >= 0 && (e.outages[ar.rec].live() || e.outages[ar.rec].Status == statusMerged)
		// An area no customer lives in (a typo, or made up) is no sign of a
		// storm: 2,000 of them in one event must not switch storm mode on.
		if !counted && o.Status != event.StatusScheduled && len(ar.meters) > 0 {
			e.stormHits = append(e.stormHits, now) // an area newly out, as the OMS says
		}
		ar.rec = r.idx
	}
	return r.members
}

// absorb merges AMI record src into r: one outage, one set of customers
// told. Lock: e.mu held.
func (e *Engine) absorb(r, src *outage) {
	r.Source = "both"
	r.Aliases = append(r.Aliases, src.ID)
	r.Aliases = append(r.Aliases, src.Aliases...)
	r.Areas = union(r.Areas, src.Areas)
	r.Meters = union(r.Meters, src.Meters)
	for _, i := range src.members {
		if e.meters[i].outage == src.idx {
			e.meters[i].outage = r.idx
			r.members = append(r.members, i)
		}
	}
	for acct, f := range src.ledger {
		e.setLedger(r, acct, f)
	}
	if r.Start == nil || (src.Start != nil && src.Start.Before(*r.Start)) {
		r.Start = src.Start
	}
	if r.ETRTold == nil {
		r.ETRTold = src.ETRTold
	}
	src.Status = statusMerged
	src.members = nil
	e.outageIdx[src.ID] = r.idx
	for _, a := range src.Aliases {
		e.outageIdx[a] = r.idx
	}
	e.touch(src)
	e.touch(r)
}

// union appends to a the elements of b it lacks.
func union(a, b []string) []string {
	if len(a)*len(b) < 1024 {
		for _, v := range b {
			if !slices.Contains(a, v) {
				a = append(a, v)
			}
		}
		return a
	}
	have := make(map[string]struct{}, len(a))
	for _, v := range a {
		have[v] = struct{}{}
	}
	for _, v := range b {
		if _, ok := have[v]; !ok {
			have[v] = struct{}{}
			a = append(a, v)
		}
	}
	return a
}

// omsScheduled announces a planned outage: planned_notice now, and a
// reminder PlannedReminder before the start when that is still ahead.
// Lock: e.mu held.
func (e *Engine) omsScheduled(r *outage, o *event.OMSOutage) {
	if r.Status == "" || r.Status == statusScheduled {
		r.Status = statusScheduled
	}
	members := e.omsScope(r, o)
	now := e.clk.Now()
	if r.Start != nil && !r.ReminderSent {
		due := r.Start.Add(-e.cfg.PlannedReminder)
		r.ReminderDue = nil
		if due.After(now) {
			r.ReminderDue = &due
		}
	}
	if r.Status == statusScheduled {
		e.planned(r, members, lPlanned, time.Time{})
	}
}

// planned sends planned_notice (flag lPlanned) or its reminder (lReminded)
// to the customers of meters not yet sent it. Lock: e.mu held.
func (e *Engine) planned(r *outage, meters []int32, flag uint8, notBefore time.Time) {
	now := e.clk.Now()
	key := "planned/"
	if flag == lReminded {
		key = "planned-reminder/"
	}
	for _, i := range meters {
		m := &e.meters[i]
		if m.outage != r.idx || !m.known || m.tripped() || e.disconnected(m.account) || r.ledger[m.account]&flag != 0 {
			continue
		}
		if flag == lReminded && r.ledger[m.account]&lPlanned == 0 {
			continue
		}
		e.setLedger(r, m.account, flag|lETR)
		vars := map[string]string{"outage_id": r.ID, "start": fmtTime(r.Start), "etr": fmtTime(r.ETR),
			"cause": r.Cause, "reminder": strconv.FormatBool(flag == lReminded)}
		if m.area >= 0 {
			vars["area"] = e.areas[m.area].name
		}
		e.emit(event.Intent{Key: key + r.ID + "/" + m.account, Kind: event.KindPlannedNotice, Account: m.account,
			Grid: e.gridOf(m), Ref: r.ID, Vars: vars, Priority: priority(e.classOf(m)), NotBefore: notBefore, CreatedAt: now})
		if flag == lPlanned {
			// Managers hear of a planned outage's customers when it is
			// announced: critical ones need a call before the day.
			e.digestAdd(m, r, vars["area"])
		}
	}
	if r.ETRTold == nil && r.ETR != nil {
		r.ETRTold = r.ETR
	}
}

// omsStarted opens (or keeps open) an outage: its customers are told, and
// a moved ETR is announced. Lock: e.mu held.
func (e *Engine) omsStarted(r *outage, o *event.OMSOutage) {
	if r.Status != statusActive {
		r.Status = statusActive
		r.OMSRestored = false
		r.RestoredAt = nil
	}
	if r.Start == nil {
		r.Start = tptr(o.UpdatedAt)
	}
	members := e.omsScope(r, o)
	e.etrCheck(r)
	e.tell(r, members)
}

// etrCheck sends etr_update to the customers told and not yet restored
// when the ETR moved by ETRChange or more from the last one they were told,
// or when they were told of the outage before any ETR was known.
// Lock: e.mu held.
func (e *Engine) etrCheck(r *outage) {
	if r.ETR == nil {
		return
	}
	prev := fmtTime(r.ETRTold)
	moved := false
	if r.ETRTold != nil {
		d := r.ETR.Sub(*r.ETRTold)
		moved = d >= e.cfg.ETRChange || -d >= e.cfg.ETRChange
	}
	if moved || r.ETRTold == nil {
		r.ETRTold = r.ETR
	}
	now := e.clk.Now()
	for _, i := range r.members {
		m := &e.meters[i]
		fl := r.ledger[m.account]
		if m.outage != r.idx || !m.known || fl&(lNotified|lPlanned) == 0 || fl&lRestored != 0 || (!moved && fl&lETR != 0) {
			continue
		}
		key := "etr/" + r.ID + "/" + m.account + "/" + r.ETR.UTC().Format("20060102T150405")
		if _, dup := e.batchKeys[key]; dup {
			continue // an account with several meters
		}
		e.batchKeys[key] = struct{}{}
		e.setLedger(r, m.account, lETR)
		e.emit(event.Intent{Key: key, Kind: event.KindETRUpdate, Account: m.account, Grid: e.gridOf(m), Ref: r.ID,
			Vars:     map[string]string{"outage_id": r.ID, "etr": fmtTime(r.ETR), "previous_etr": prev, "start": fmtTime(r.Start)},
			Priority: priority(e.classOf(m)), CreatedAt: now})
	}
}

// omsRestored records the OMS's restoration. Customers whose meters are
// back are told; the record closes once no meter is dark (settle).
// Lock: e.mu held.
func (e *Engine) omsRestored(r *outage, o *event.OMSOutage) {
	if r.Status == "" {
		r.Status = statusRestored
		r.RestoredAt = tptr(o.UpdatedAt)
		return
	}
	r.OMSRestored = true
	r.RestoredAt = tptr(o.UpdatedAt)
	if r.Status == statusScheduled {
		r.Status = statusActive
	}
	for _, i := range r.members {
		if e.meters[i].outage == r.idx {
			e.meterBack(i)
		}
	}
	e.touched[r.idx] = struct{}{}
}

// reminders sends planned reminders that are due. Lock: e.mu held.
func (e *Engine) reminders(now time.Time) {
	for _, r := range e.outages {
		if r.Status != statusScheduled || r.ReminderDue == nil || r.ReminderSent || now.Before(*r.ReminderDue) {
			continue
		}
		r.ReminderSent = true
		e.touch(r)
		e.planned(r, r.members, lReminded, *r.ReminderDue)
	}
}
