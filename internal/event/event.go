// Package event holds the types that flow through gridbell: decoded inputs
// (ingest → rules) and notification intents (rules → notify). It imports
// nothing of gridbell's, so every stage can depend on it.
package event

import "time"

// MeterEventType is the type of a meter or concentrator event.
type MeterEventType string

// Meter and concentrator event types (docs/interfaces.md §1).
const (
	PowerOff    MeterEventType = "power_off"
	PowerOn     MeterEventType = "power_on"
	RemoteTrip  MeterEventType = "remote_trip"
	RemoteClose MeterEventType = "remote_close"
)

// Reading is one smart-meter reading (docs/interfaces.md §1). Optional fields are nil
// when absent.
type Reading struct {
	Meter        string
	Concentrator string // from the topic; empty when unknown
	TS           time.Time
	KWh          float64
	Voltage      *float64
	Current      *float64
	PowerKW      *float64
	Balance      *float64

	// What the rules found of the meter when they applied the reading, so
	// that ingest need not look it up again for InfluxDB's area tag (a
	// registry lookup was an eighth of batch ingest's CPU). Never encoded.
	Found Lookup `json:"-"`
	Area  string `json:"-"` // the meter's transformer area when Found is LookupKnown
}

// Lookup is whether the meter of a reading was looked up in the customer
// registry, and found.
type Lookup uint8

// Lookup results.
const (
	LookupNone    Lookup = iota // not looked up (the rules did not apply it here)
	LookupKnown                 // an active meter of the registry
	LookupUnknown               // not in the registry
)

// MeterEvent is one event of one meter.
type MeterEvent struct {
	Meter        string
	Concentrator string // from the topic; empty when unknown
	TS           time.Time
	Type         MeterEventType
}

// ConcentratorEvent applies to every meter behind the concentrator.
type ConcentratorEvent struct {
	Concentrator string
	TS           time.Time
	Type         MeterEventType // PowerOff or PowerOn
}

// Outage kinds and statuses from the OMS (docs/interfaces.md §2).
const (
	OutagePlanned = "planned"
	OutageFault   = "fault"

	StatusScheduled  = "scheduled"
	StatusStarted    = "started"
	StatusETRUpdated = "etr_updated"
	StatusRestored   = "restored"
	StatusCancelled  = "cancelled"
)

// OMSOutage is one message of topic oms.outages.
type OMSOutage struct {
	OutageID  string
	Kind      string
	Status    string
	Areas     []string
	Feeders   []string
	Meters    []string
	Start     *time.Time
	ETR       *time.Time
	Cause     string
	UpdatedAt time.Time
}

// Billing event types (docs/interfaces.md §2).
const (
	BillingArrears             = "arrears"
	BillingBalance             = "balance"
	BillingPayment             = "payment"
	BillingDisconnectScheduled = "disconnect_scheduled"
)

// BillingEvent is one message of topic billing.accounts.
type BillingEvent struct {
	Account      string
	Type         string
	Amount       *float64
	Balance      *float64
	Due          string // YYYY-MM-DD as sent
	DisconnectAt *time.Time
	At           time.Time
}

// Event is one decoded input. Exactly one of the pointers is set.
type Event struct {
	Reading      *Reading
	Meter        *MeterEvent
	Concentrator *ConcentratorEvent
	Outage       *OMSOutage
	Billing      *BillingEvent
	Command      *Command // distributed mode only: an API write forwarded to the rules

	Source   string    // "mqtt", "kafka", "http", "replay", "simulate"
	Received time.Time // arrival time at gridbell
	Late     bool      // event time older than the lateness window
}

// Command kinds: API writes that change the rules' state. In distributed
// mode an instance that is not running the rules forwards them, like input,
// through the meter topic, so they are applied once, in order, by whichever
// instance runs the rules.
const (
	CommandConfirm  = "confirm"   // a dispatcher confirmed an outage's restoration
	CommandStillOut = "still_out" // a customer replied that they are still out
)

// Command is one forwarded API write.
type Command struct {
	Kind     string
	Outage   string   // confirm: the outage id
	By       string   // confirm: the authenticated name
	Reason   string   // confirm: why, when meters were still dark
	Phone    string   // still_out: the number that replied
	Accounts []string // still_out: the accounts it holds
}
