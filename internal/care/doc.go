// Package care is gridbell's customer care (docs/interfaces.md §9): each
// customer's outage history, the reliability indices built on it
// (SAIFI, SAIDI, CAIDI, MAIFI per grid, feeder and transformer area), the
// customers at risk of complaining, and whether the SMS came before the
// customer's call.
//
// It sits beside notify, after rules: a projection of its own reads the
// outage records and meter changes the rules commit (rules.RecordStamps,
// rules.MeterChanges) and catches up in the background: the rules never
// wait for its reads, and on SQLite its writes queue behind theirs at the
// store's write gate (a step's transaction, once begun, is not cut short). The HTTP API reads its answers, the
// hotline records calls in it, and notify asks it, when it renders an
// outage SMS, how many sustained interruptions the customer has had.
package care
