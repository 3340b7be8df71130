// Package contacts is the customer registry: it imports the marketing (CIS)
// system's contacts file, cleans phone numbers, keeps customers in the store
// and answers the lookups every other stage needs (meter → account →
// contacts, area → meters, concentrator → meters, feeder → areas, grid →
// manager). Ingest, rules and notify all read it; it imports none of them.
package contacts

// Verdict is what the cleaner (or Twilio, later) says of one phone number.
type Verdict string

// Phone verdicts (issue 3).
const (
	Valid    Verdict = "valid"    // valid as typed
	Fixed    Verdict = "fixed"    // valid after cleaning
	Landline Verdict = "landline" // valid for calls, cannot take SMS
	Invalid  Verdict = "invalid"
	Missing  Verdict = "missing"
)

// CanSMS reports whether a number with verdict v may be sent an SMS.
func (v Verdict) CanSMS() bool { return v == Valid || v == Fixed }

// Class is a customer class (docs/interfaces.md §3).
type Class string

// Customer classes.
const (
	Resident    Class = "resident"
	Commercial  Class = "commercial"
	Industrial  Class = "industrial"
	Important   Class = "important"
	HighRisk    Class = "high_risk"
	LifeSupport Class = "life_support"
)

// Critical reports whether customers of class c get first attention and a
// manager digest naming them.
func (c Class) Critical() bool { return c == Important || c == HighRisk || c == LifeSupport }

// MeterInfo is what the registry knows of one meter.
type MeterInfo struct {
	Meter        string
	Account      string
	Area         string
	Concentrator string
	Feeder       string
	Grid         string
	Class        Class
	Prepaid      bool
}

// Contact is one cleaned phone number of an account.
type Contact struct {
	Phone    string // E.164, e.g. +8613812345678; empty when Verdict is Missing or Invalid
	Raw      string // as typed by the clerk
	Verdict  Verdict
	Reason   string // why it is not Valid
	OptOut   bool
	Language string // zh or en
}

// Account is one customer account with its meters and contacts.
type Account struct {
	Account  string
	Name     string
	Area     string // area of the first meter
	Grid     string
	Class    Class
	Prepaid  bool
	Language string
	Meters   []string
	Contacts []Contact
	Retired  bool // missing from the latest import: kept, never messaged
}

// GridInfo is one service grid and its customer manager.
type GridInfo struct {
	Grid         string
	Manager      string
	ManagerPhone string // E.164; empty when missing or not SMS-capable
	Areas        []string
}
