// Package notify is the last stage of the flow (ingest → rules → notify): it
// turns the rules' intents into SMS. Intents are stored in a durable outbox
// inside the rules' own transaction; a dispatcher expands each one into a
// message per phone at dispatch time, applies the message policies (contact
// verdicts and opt-out, quiet hours, consolidation, per-phone rate limit,
// priority), renders the zh/en templates and hands the messages to a Sender:
// the outbox file (the default) or Twilio. Delivery status and customer
// replies come back through the Twilio webhooks.
//
// Intent variables the templates read (Intent.Vars, all strings; times in
// RFC 3339): area, start, etr, end or restored_at, cause, reminder ("true"
// for the 24 h planned reminder), balance, threshold, amount, due,
// disconnect_at; digests: manager, start (the earliest outage's), areas,
// outages, count, critical_count and critical (all critical customers),
// life_support_count and life_support, other_critical_count and
// other_critical (important and high-risk), or one free-text summary. The masked accounts, the hotline and the grid
// are filled in by notify. Operators override any template with
// <templates_dir>/<zh|en>/<name>.txt.
package notify
