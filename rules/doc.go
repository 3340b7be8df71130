// Package rules is the middle of gridbell's flow (ingest → rules → notify):
// it keeps every meter's power state, filters momentary blips, infers area
// outages, merges what meters and the OMS say into one outage record, verifies
// restoration meter by meter, tracks prepaid balances and arrears, and decides
// who must be told what. Its output is notification intents, written through
// an IntentSink in the same transaction as the state change that caused them.
//
// All state lives in memory, indexed by meter, and is persisted in batches:
// one writer goroutine applies many callers' events, then writes the dirty
// rows and the intents in one transaction (group commit). Timers — the
// momentary window, planned reminders, storm digests — are stored due times,
// compared with the clock on each tick, so a restart neither loses nor
// repeats a decision.
package rules
