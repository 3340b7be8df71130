package ingest

import (
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gridbell/gridbell/internal/event"
)

// Wire shapes (docs/interfaces.md §1, §2). Pointers tell an absent number from zero.
type rawReading struct {
	Meter   string   `json:"meter"`
	TS      string   `json:"ts"`
	KWh     *float64 `json:"kwh"`
	Voltage *float64 `json:"voltage"`
	Current *float64 `json:"current"`
	PowerKW *float64 `json:"power_kw"`
	Balance *float64 `json:"balance"`
}

type rawMeterEvent struct {
	Meter string `json:"meter"`
	TS    string `json:"ts"`
	Type  string `json:"type"`
}

type rawConcentratorEvent struct {
	Concentrator string `json:"concentrator"`
	TS           string `json:"ts"`
	Type         string `json:"type"`
}

type rawOutage struct {
	OutageID  string   `json:"outage_id"`
	Kind      string   `json:"kind"`
	Status    string   `json:"status"`
	Areas     []string `json:"areas"`
	Feeders   []string `json:"feeders"`
	Meters    []string `json:"meters"`
	Start     string   `json:"start"`
	ETR       string   `json:"etr"`
	Cause     string   `json:"cause"`
	UpdatedAt string   `json:"updated_at"`
}

type rawBilling struct {
	Account      string   `json:"account"`
	Type         string   `json:"type"`
	Amount       *float64 `json:"amount"`
	Balance      *float64 `json:"balance"`
	Due          string   `json:"due"`
	DisconnectAt string   `json:"disconnect_at"`
	At           string   `json:"at"`
}

// Plausibility bounds for a meter's readings. They catch unit mistakes
// (Wh sent as kWh shows up as absurd currents and voltages, mV as V), not
// physics: a 10 kV meter reports secondary-side voltage.
const (
	maxVoltage = 1000.0
	maxCurrent = 100000.0
	maxKWh     = 1e10 // a register far beyond any meter's digits
	maxMoney   = 1e9  // CNY: balances, amounts
)

// validator checks decoded wire objects against the limits at time now.
type validator struct {
	now time.Time
	lim Limits
}

// eventTime parses an RFC 3339 event time, rejects it when too far ahead and
// reports whether it is late.
func (v *validator) eventTime(idx int, field, s string) (t time.Time, late bool, rej *Rejection) {
	if s == "" {
		return t, false, reject(idx, ReasonMissing, "field %s is required", field)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, false, reject(idx, ReasonBadTime, "field %s %q is not an RFC 3339 time", field, s)
	}
	switch late, reason := v.window(t); reason {
	case ReasonFuture:
		return t, false, reject(idx, ReasonFuture, "field %s %s is more than %s in the future", field, s, v.lim.MaxFuture)
	case ReasonPast:
		return t, false, reject(idx, ReasonPast, "field %s %s is more than %s in the past", field, s, v.lim.MaxPast)
	default:
		return t, late, nil
	}
}

// window places an event time: too far ahead (ReasonFuture), too old
// (ReasonPast), or accepted ("") and late or not.
func (v *validator) window(t time.Time) (late bool, reason string) {
	switch {
	case t.After(v.now.Add(v.lim.MaxFuture)):
		return false, ReasonFuture
	case t.Before(v.now.Add(-v.lim.MaxPast)):
		return false, ReasonPast
	}
	return t.Before(v.now.Add(-v.lim.LateAfter)), ""
}

// optTime parses an optional RFC 3339 time that may lie ahead (a planned
// start, an ETR, a disconnection) up to Limits.MaxAhead; "" is absent.
func (v *validator) optTime(idx int, field, s string) (*time.Time, *Rejection) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, reject(idx, ReasonBadTime, "field %s %q is not an RFC 3339 time", field, s)
	}
	if rej := v.plausible(idx, field, s, t); rej != nil {
		return nil, rej
	}
	return &t, nil
}

// plausible rejects t unless it lies within Limits.MaxPast before now and
// Limits.MaxAhead after.
func (v *validator) plausible(idx int, field, s string, t time.Time) *Rejection {
	if t.After(v.now.Add(v.lim.MaxAhead)) {
		return reject(idx, ReasonFuture, "field %s %s is more than %s ahead (ingest.max_ahead)", field, s, v.lim.MaxAhead)
	}
	if t.Before(v.now.Add(-v.lim.MaxPast)) {
		return reject(idx, ReasonPast, "field %s %s is more than %s in the past (ingest.max_past)", field, s, v.lim.MaxPast)
	}
	return nil
}

// The values each enumerated field takes (docs/interfaces.md §1, §2).
var (
	meterEventTypes        = []event.MeterEventType{event.PowerOff, event.PowerOn, event.RemoteTrip, event.RemoteClose}
	concentratorEventTypes = []event.MeterEventType{event.PowerOff, event.PowerOn}
	outageKinds            = []string{event.OutagePlanned, event.OutageFault}
	outageStatuses         = []string{event.StatusScheduled, event.StatusStarted, event.StatusETRUpdated, event.StatusRestored, event.StatusCancelled}
	billingTypes           = []string{event.BillingArrears, event.BillingBalance, event.BillingPayment, event.BillingDisconnectScheduled}
)

// checkEnum rejects v unless it is one of allowed; "" is a missing field.
func checkEnum[S ~string](idx int, field string, v S, allowed []S) *Rejection {
	switch {
	case v == "":
		return reject(idx, ReasonMissing, "field %s is required", field)
	case slices.Contains(allowed, v):
		return nil
	}
	return reject(idx, ReasonBadField, "%s %q is not one of %v", field, v, allowed)
}

func checkID(idx int, field, id string) *Rejection {
	if id == "" {
		return reject(idx, ReasonMissing, "field %s is required", field)
	}
	if len(id) > maxIDLen {
		return reject(idx, ReasonBadField, "field %s is longer than %d bytes", field, maxIDLen)
	}
	if hasControl(id) {
		return reject(idx, ReasonBadField, "field %s %q has control characters", field, id)
	}
	return nil
}

// hasControl reports whether s has an ASCII control character (a newline
// in an id splits log lines and CSV rows) or a Unicode replacement
// character (what invalid UTF-8 was decoded as).
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return strings.ContainsRune(s, utf8.RuneError)
}

// reading checks a reading; topicMeter is "" on the batch topic.
func (v *validator) reading(r *rawReading, idx int, conc, topicMeter string) (event.Event, *Rejection) {
	if rej := checkID(idx, "meter", r.Meter); rej != nil {
		return event.Event{}, rej
	}
	if topicMeter != "" && r.Meter != topicMeter {
		return event.Event{}, reject(idx, ReasonBadField, "meter %q differs from the topic's meter %q", r.Meter, topicMeter)
	}
	ts, late, rej := v.eventTime(idx, "ts", r.TS)
	if rej != nil {
		return event.Event{}, rej
	}
	if rej := readingValues(idx, r); rej != nil {
		return event.Event{}, rej
	}
	return event.Event{
		Reading: &event.Reading{Meter: r.Meter, Concentrator: conc, TS: ts, KWh: *r.KWh,
			Voltage: r.Voltage, Current: r.Current, PowerKW: r.PowerKW, Balance: r.Balance},
		Source: "mqtt", Received: v.now, Late: late,
	}, nil
}

// readingValues checks a reading's numbers: kwh present, each within its
// bounds. The fast decoder calls it too, so both judge alike.
func readingValues(idx int, r *rawReading) *Rejection {
	switch {
	case r.KWh == nil:
		return reject(idx, ReasonMissing, "field kwh is required")
	case *r.KWh < 0:
		return reject(idx, ReasonBadField, "kwh %g is negative: it is the cumulative import register", *r.KWh)
	case *r.KWh > maxKWh:
		return reject(idx, ReasonBadField, "kwh %g is over %g", *r.KWh, maxKWh)
	case r.Balance != nil && (*r.Balance > maxMoney || *r.Balance < -maxMoney):
		return reject(idx, ReasonBadField, "balance %g is outside ±%g", *r.Balance, maxMoney)
	case r.Voltage != nil && (*r.Voltage < 0 || *r.Voltage > maxVoltage):
		return reject(idx, ReasonBadField, "voltage %g V is outside 0..%g V", *r.Voltage, maxVoltage)
	case r.Current != nil && (*r.Current < 0 || *r.Current > maxCurrent):
		return reject(idx, ReasonBadField, "current %g A is outside 0..%g A", *r.Current, maxCurrent)
	}
	return nil
}

func (v *validator) meterEvent(r *rawMeterEvent, idx int, conc, topicMeter string) (event.Event, *Rejection) {
	if rej := checkID(idx, "meter", r.Meter); rej != nil {
		return event.Event{}, rej
	}
	if r.Meter != topicMeter {
		return event.Event{}, reject(idx, ReasonBadField, "meter %q differs from the topic's meter %q", r.Meter, topicMeter)
	}
	ts, late, rej := v.eventTime(idx, "ts", r.TS)
	if rej != nil {
		return event.Event{}, rej
	}
	t := event.MeterEventType(r.Type)
	if rej := checkEnum(idx, "type", t, meterEventTypes); rej != nil {
		return event.Event{}, rej
	}
	return event.Event{
		Meter:  &event.MeterEvent{Meter: r.Meter, Concentrator: conc, TS: ts, Type: t},
		Source: "mqtt", Received: v.now, Late: late,
	}, nil
}

func (v *validator) concentratorEvent(r *rawConcentratorEvent, idx int, conc string) (event.Event, *Rejection) {
	if r.Concentrator != "" && r.Concentrator != conc {
		return event.Event{}, reject(idx, ReasonBadField, "concentrator %q differs from the topic's concentrator %q", r.Concentrator, conc)
	}
	ts, late, rej := v.eventTime(idx, "ts", r.TS)
	if rej != nil {
		return event.Event{}, rej
	}
	t := event.MeterEventType(r.Type)
	if rej := checkEnum(idx, "type", t, concentratorEventTypes); rej != nil {
		return event.Event{}, rej
	}
	return event.Event{
		Concentrator: &event.ConcentratorEvent{Concentrator: conc, TS: ts, Type: t},
		Source:       "mqtt", Received: v.now, Late: late,
	}, nil
}

func (v *validator) outage(r *rawOutage, idx int) (event.Event, *Rejection) {
	if rej := checkID(idx, "outage_id", r.OutageID); rej != nil {
		return event.Event{}, rej
	}
	if rej := checkEnum(idx, "kind", r.Kind, outageKinds); rej != nil {
		return event.Event{}, rej
	}
	if rej := checkEnum(idx, "status", r.Status, outageStatuses); rej != nil {
		return event.Event{}, rej
	}
	upd, late, rej := v.eventTime(idx, "updated_at", r.UpdatedAt)
	if rej != nil {
		return event.Event{}, rej
	}
	start, rej := v.optTime(idx, "start", r.Start)
	if rej != nil {
		return event.Event{}, rej
	}
	etr, rej := v.optTime(idx, "etr", r.ETR)
	if rej != nil {
		return event.Event{}, rej
	}
	if start != nil && etr != nil && etr.Before(*start) {
		return event.Event{}, reject(idx, ReasonBadTime, "etr %s is before start %s", r.ETR, r.Start)
	}
	if rej := v.scope(idx, r); rej != nil {
		return event.Event{}, rej
	}
	cause := cleanText(r.Cause)
	if n := utf8.RuneCountInString(cause); n > v.lim.MaxCause {
		return event.Event{}, reject(idx, ReasonOverLimit, "cause has %d characters, over the limit of %d (ingest.max_cause)", n, v.lim.MaxCause)
	}
	return event.Event{
		Outage: &event.OMSOutage{OutageID: r.OutageID, Kind: r.Kind, Status: r.Status,
			Areas: r.Areas, Feeders: r.Feeders, Meters: r.Meters,
			Start: start, ETR: etr, Cause: cause, UpdatedAt: upd},
		Received: v.now, Late: late,
	}, nil
}

// scope checks an OMS event's areas, feeders and meters: each list within
// its limit, each id 1..maxIDLen bytes without control characters.
func (v *validator) scope(idx int, r *rawOutage) *Rejection {
	for _, l := range []struct {
		field string
		ids   []string
		max   int
	}{{"areas", r.Areas, v.lim.MaxAreas}, {"feeders", r.Feeders, v.lim.MaxFeeders}, {"meters", r.Meters, v.lim.MaxMeters}} {
		if len(l.ids) > l.max {
			return reject(idx, ReasonOverLimit, "%s lists %d ids, over the limit of %d (ingest.max_%s)", l.field, len(l.ids), l.max, l.field)
		}
		for _, id := range l.ids {
			if id == "" || len(id) > maxIDLen || hasControl(id) {
				return reject(idx, ReasonBadField, "%s ids must be 1..%d bytes without control characters, got %q", l.field, maxIDLen, id)
			}
		}
	}
	return nil
}

// cleanText folds runs of white space (newlines, tabs) to one space and
// drops other control characters: a cause is told in one line of an SMS.
func cleanText(s string) string {
	if s == "" {
		return s
	}
	s = strings.Join(strings.Fields(s), " ")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}

func (v *validator) billing(r *rawBilling, idx int) (event.Event, *Rejection) {
	if rej := checkID(idx, "account", r.Account); rej != nil {
		return event.Event{}, rej
	}
	at, late, rej := v.eventTime(idx, "at", r.At)
	if rej != nil {
		return event.Event{}, rej
	}
	disc, rej := v.optTime(idx, "disconnect_at", r.DisconnectAt)
	if rej != nil {
		return event.Event{}, rej
	}
	if r.Due != "" {
		due, err := time.Parse(time.DateOnly, r.Due)
		if err != nil {
			return event.Event{}, reject(idx, ReasonBadTime, "field due %q is not a YYYY-MM-DD date", r.Due)
		}
		if rej := v.plausible(idx, "due", r.Due, due); rej != nil {
			return event.Event{}, rej
		}
	}
	switch {
	case r.Amount != nil && *r.Amount < 0:
		return event.Event{}, reject(idx, ReasonBadField, "amount %g is negative", *r.Amount)
	case r.Amount != nil && *r.Amount > maxMoney:
		return event.Event{}, reject(idx, ReasonBadField, "amount %g is over %g", *r.Amount, maxMoney)
	case r.Balance != nil && (*r.Balance > maxMoney || *r.Balance < -maxMoney):
		return event.Event{}, reject(idx, ReasonBadField, "balance %g is outside ±%g", *r.Balance, maxMoney)
	}
	if rej := checkEnum(idx, "type", r.Type, billingTypes); rej != nil {
		return event.Event{}, rej
	}
	var need string
	switch r.Type {
	case event.BillingArrears, event.BillingPayment:
		if r.Amount == nil {
			need = "amount"
		}
	case event.BillingBalance:
		if r.Balance == nil {
			need = "balance"
		}
	case event.BillingDisconnectScheduled:
		if disc == nil {
			need = "disconnect_at"
		}
	}
	if need != "" {
		return event.Event{}, reject(idx, ReasonMissing, "field %s is required for type %s", need, r.Type)
	}
	return event.Event{
		Billing: &event.BillingEvent{Account: r.Account, Type: r.Type, Amount: r.Amount,
			Balance: r.Balance, Due: r.Due, DisconnectAt: disc, At: at},
		Received: v.now, Late: late,
	}, nil
}
