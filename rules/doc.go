// Package rules is the middle of gridbell's flow (ingest → rules → notify):
// it keeps every meter's power state, filters momentary blips, infers area
// outages, merges what meters and the OMS say into one outage record, verifies
// restoration meter by meter, tracks prepaid balances and arrears, and decides
// who must be told what. Its output is notification intents, written through
// an IntentSink in the same transaction as the state change that caused them.
//
// All state lives in memory, indexed by meter, and is persisted in batches:
// one writer goroutine (Run) applies many callers' events, then writes the
// changes and the intents in one transaction (group commit). Meter changes
// are appended as one log row a batch and copied into rules_meters when the
// writer is idle. A reading that changes nothing but a meter's last-seen
// time (no live outage, no balance change) writes nothing: last-seen times
// are written by an hourly sweep, with the meter's next real change, or when
// it joins an outage it was seen in; a crash may lose only last-seen times
// newer than the last sweep, which no decision depends on (meter.go,
// seenFlushEvery). Timers — the momentary window, planned reminders, held
// storm digests — are stored due times compared with the clock on each tick,
// so a restart neither loses nor repeats a decision. A failed commit makes
// the engine reload its state from the store.
//
// Where docs/interfaces.md §5 is silent, the rules decide as follows.
//
//   - Order is by event time. A power event older than the meter's newest
//     changes nothing; duplicates change nothing. A last gasp stamped more
//     than Reorder before now (a replay, a backlog) darkens the meter but
//     starts no decision; one arriving after its window would have closed is
//     still held 2 s for a power_on behind it. A power_on or a reading stamped
//     after a gasp, before the decision is taken, cancels it.
//   - A concentrator's power_on lights only meters its power_off darkened.
//   - One meter dark past the window is an outage of its customer; at
//     AreaDarkRatio of an area's meters the whole area is out. AMI records are
//     per area ("AMI-<area>-<start UTC>"). A customer whose meter was seen
//     powered after the outage began is not told.
//   - An OMS outage covering meters of an active AMI record absorbs it: the
//     record takes the OMS id, the AMI id stays an alias (Outage(aliasID)
//     finds it), source becomes both. Intents already written keep the ref
//     they were sent with, so notify's counts for a merged outage are those
//     of its id and its aliases. The OMS scope only grows.
//   - Planned outages: customers told by planned_notice get no outage intent
//     when it starts, but do get etr_update and restored. When one is
//     announced, each grid's manager gets a digest of its customers there,
//     naming the critical ones (they need a call before the day). A cancelled outage
//     sends nothing more.
//   - restored: to customers told (outage or planned_notice), once each of
//     their meters in the outage is powered after being seen dark, sent a
//     power_on since the outage began, or sent a reading stamped after the
//     restoration: the OMS restored time, or for an AMI record the moment the
//     last meter that reported darkness came back.
//   - Verification: restored = seen powered again as above; dark = dark by
//     its own report or not heard from since the outage began (with its
//     last-seen time); unknown = not in the registry, or tripped. A record
//     closes (status restored) once restored and no meter is dark, or when a
//     dispatcher confirms it.
//   - etr_update goes to customers told and not yet restored, when the ETR
//     moves by ETRChange from the last one told, or when they were told before
//     any ETR was known.
//   - Manager digests: one per grid per batch of decisions, naming up to 20
//     critical customers (count given); in storm mode at most one per grid per
//     StormDigest. Storm mode starts when more than StormAreas areas went out
//     (seen by meters or declared by the OMS) within StormWindow and ends when
//     at most half as many did. A grid
//     without a manager phone gets none (gridbell_rules_digest_no_manager_total).
//   - Billing: balance_low once per drop below BalanceLow, re-armed by a
//     payment or a balance at or above it; balance_exhausted once at ≤ 0,
//     re-armed above 0; the newer of reading and billing balance wins. A
//     disconnect_scheduled whose time has passed, on an account in arrears,
//     means the customer gets no outage intent until a payment.
//   - Meters and areas are read from the registry when first seen and
//     cached. When the registry's generation moves (an import, or a reload
//     of one made by another process), the writer re-reads, before its next
//     batch, every cached meter's account, area, grid, class and
//     concentrator and every area's members: retired meters become unknown
//     (state kept, no intents), new ones known. Outage records, their members
//     and what customers were told are kept.
//   - A record's counts come from the meters it holds while it is live. When
//     it closes (restored, cancelled, confirmed) they are kept with it, so a
//     newer outage that takes the same meters, in this run or after a
//     restart, leaves them as they were; afterwards they only improve, as
//     customers still dark at a confirmation come back.
package rules
