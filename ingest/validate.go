package ingest

import (
	"slices"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// Wire shapes (CONTRACT §1, §2). Pointers tell an absent number from zero.
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
	if t.After(v.now.Add(v.lim.MaxFuture)) {
		return t, false, reject(idx, ReasonFuture, "field %s %s is more than %s in the future", field, s, v.lim.MaxFuture)
	}
	return t, t.Before(v.now.Add(-v.lim.LateAfter)), nil
}

// optTime parses an optional RFC 3339 time; "" is absent.
func optTime(idx int, field, s string) (*time.Time, *Rejection) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, reject(idx, ReasonBadTime, "field %s %q is not an RFC 3339 time", field, s)
	}
	return &t, nil
}

// The values each enumerated field takes (CONTRACT §1, §2).
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
	return nil
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
	switch {
	case r.KWh == nil:
		return event.Event{}, reject(idx, ReasonMissing, "field kwh is required")
	case *r.KWh < 0:
		return event.Event{}, reject(idx, ReasonBadField, "kwh %g is negative: it is the cumulative import register", *r.KWh)
	case r.Voltage != nil && (*r.Voltage < 0 || *r.Voltage > maxVoltage):
		return event.Event{}, reject(idx, ReasonBadField, "voltage %g V is outside 0..%g V", *r.Voltage, maxVoltage)
	case r.Current != nil && (*r.Current < 0 || *r.Current > maxCurrent):
		return event.Event{}, reject(idx, ReasonBadField, "current %g A is outside 0..%g A", *r.Current, maxCurrent)
	}
	return event.Event{
		Reading: &event.Reading{Meter: r.Meter, Concentrator: conc, TS: ts, KWh: *r.KWh,
			Voltage: r.Voltage, Current: r.Current, PowerKW: r.PowerKW, Balance: r.Balance},
		Source: "mqtt", Received: v.now, Late: late,
	}, nil
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
	start, rej := optTime(idx, "start", r.Start)
	if rej != nil {
		return event.Event{}, rej
	}
	etr, rej := optTime(idx, "etr", r.ETR)
	if rej != nil {
		return event.Event{}, rej
	}
	for _, list := range [][]string{r.Areas, r.Feeders, r.Meters} {
		for _, id := range list {
			if id == "" || len(id) > maxIDLen {
				return event.Event{}, reject(idx, ReasonBadField, "scope ids must be 1..%d bytes, got %q", maxIDLen, id)
			}
		}
	}
	return event.Event{
		Outage: &event.OMSOutage{OutageID: r.OutageID, Kind: r.Kind, Status: r.Status,
			Areas: r.Areas, Feeders: r.Feeders, Meters: r.Meters,
			Start: start, ETR: etr, Cause: r.Cause, UpdatedAt: upd},
		Received: v.now, Late: late,
	}, nil
}

func (v *validator) billing(r *rawBilling, idx int) (event.Event, *Rejection) {
	if rej := checkID(idx, "account", r.Account); rej != nil {
		return event.Event{}, rej
	}
	at, late, rej := v.eventTime(idx, "at", r.At)
	if rej != nil {
		return event.Event{}, rej
	}
	disc, rej := optTime(idx, "disconnect_at", r.DisconnectAt)
	if rej != nil {
		return event.Event{}, rej
	}
	if r.Due != "" {
		if _, err := time.Parse(time.DateOnly, r.Due); err != nil {
			return event.Event{}, reject(idx, ReasonBadTime, "field due %q is not a YYYY-MM-DD date", r.Due)
		}
	}
	if r.Amount != nil && *r.Amount < 0 {
		return event.Event{}, reject(idx, ReasonBadField, "amount %g is negative", *r.Amount)
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
