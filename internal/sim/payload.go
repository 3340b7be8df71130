package sim

import (
	"fmt"
	"time"
)

// cst is China Standard Time: the head-end stamps events with +08:00.
var cst = time.FixedZone("CST", 8*3600)

// readingMsg is one reading (docs/interfaces.md §1).
type readingMsg struct {
	Meter   string   `json:"meter"`
	TS      string   `json:"ts"`
	KWh     float64  `json:"kwh"`
	Voltage float64  `json:"voltage"`
	Current float64  `json:"current"`
	PowerKW float64  `json:"power_kw"`
	Balance *float64 `json:"balance,omitempty"`
}

// meterEventMsg is one meter event (docs/interfaces.md §1).
type meterEventMsg struct {
	Meter string `json:"meter"`
	TS    string `json:"ts"`
	Type  string `json:"type"`
}

// concEventMsg is one concentrator event (docs/interfaces.md §1).
type concEventMsg struct {
	Concentrator string `json:"concentrator"`
	TS           string `json:"ts"`
	Type         string `json:"type"`
}

// omsMsg is one oms.outages message (docs/interfaces.md §2).
type omsMsg struct {
	OutageID  string   `json:"outage_id"`
	Kind      string   `json:"kind"`
	Status    string   `json:"status"`
	Areas     []string `json:"areas"`
	Feeders   []string `json:"feeders"`
	Meters    []string `json:"meters"`
	Start     string   `json:"start"`
	ETR       string   `json:"etr,omitempty"`
	Cause     string   `json:"cause,omitempty"`
	UpdatedAt string   `json:"updated_at"`
}

// billingMsg is one billing.accounts message (docs/interfaces.md §2).
type billingMsg struct {
	Account string   `json:"account"`
	Type    string   `json:"type"`
	Amount  *float64 `json:"amount,omitempty"`
	Due     string   `json:"due,omitempty"`
	At      string   `json:"at"`
}

// omsMessage renders p for a scenario that started at start, sent at now.
// The outage id is OMS-<yyyymmdd>-<nnnn>, numbered from the minute of the
// day the scenario started: a second `make run` on the same data directory
// plays a new outage, not a replay of the restored one, which would send
// nothing.
func omsMessage(p *OMSPost, start, now time.Time) omsMsg {
	n := start.Hour()*60 + start.Minute() + p.Seq
	m := omsMsg{
		OutageID:  fmt.Sprintf("OMS-%s-%04d", start.Format("20060102"), n),
		Kind:      p.Kind,
		Status:    p.Status,
		Areas:     p.Areas,
		Feeders:   []string{},
		Meters:    []string{},
		Start:     start.Add(p.Start).Format(time.RFC3339),
		Cause:     p.Cause,
		UpdatedAt: now.Format(time.RFC3339),
	}
	if p.ETR > 0 {
		m.ETR = start.Add(p.ETR).Format(time.RFC3339)
	}
	return m
}

// billingMessage renders p for a scenario that started at start, sent at now.
func billingMessage(p *BillingPost, start, now time.Time) billingMsg {
	m := billingMsg{Account: p.Account, Type: p.Type, At: now.Format(time.RFC3339)}
	if p.Amount != 0 {
		a := p.Amount
		m.Amount = &a
	}
	if p.Type == "arrears" {
		m.Due = start.AddDate(0, 0, p.DueDays).Format(time.DateOnly)
	}
	return m
}
