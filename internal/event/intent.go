package event

import "time"

// Kind is an SMS kind (docs/interfaces.md §4).
type Kind string

// The SMS kinds.
const (
	KindPlannedNotice    Kind = "planned_notice"
	KindOutage           Kind = "outage"
	KindETRUpdate        Kind = "etr_update"
	KindRestored         Kind = "restored"
	KindArrears          Kind = "arrears"
	KindDisconnectNotice Kind = "disconnect_notice"
	KindBalanceLow       Kind = "balance_low"
	KindBalanceExhausted Kind = "balance_exhausted"
	KindManagerDigest    Kind = "manager_digest"
)

// Kinds lists every SMS kind.
var Kinds = []Kind{KindPlannedNotice, KindOutage, KindETRUpdate, KindRestored,
	KindArrears, KindDisconnectNotice, KindBalanceLow, KindBalanceExhausted, KindManagerDigest}

// Priority orders intents; lower is more urgent.
type Priority int

// Priorities, most urgent first.
const (
	PriorityCritical Priority = 0 // life_support, high_risk, important customers and their managers
	PriorityOutage   Priority = 1 // outage, etr_update, restored, planned_notice
	PriorityBilling  Priority = 2 // arrears, balances, disconnect notices
)

// Intent is a decision of the rules that somebody must be told something.
// Notify turns it into SMS: one per phone of the account (or to To).
type Intent struct {
	Key       string // idempotency key: the same decision always gets the same key
	Kind      Kind
	Account   string // the customer's account; empty for manager digests
	Grid      string
	To        string   // an explicit E.164 recipient (manager digests); empty = the account's phones
	Ref       string   // outage id for outage kinds, billing event id for billing kinds
	Aliases   []string // other ids of the same outage (records merged into Ref): a customer told under one of them was told of Ref
	Vars      map[string]string
	Priority  Priority
	NotBefore time.Time // zero = at once
	CreatedAt time.Time
}
