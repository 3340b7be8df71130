package care

import (
	"context"
	"fmt"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/notify"
)

// Profile answers GET /api/v1/customers/{account}/profile
// (docs/interfaces.md §9).
type Profile struct {
	Account   string   `json:"account"`
	Tags      []string `json:"tags"`
	Outages   Periods  `json:"outages"` // sustained interruptions
	Minutes   Periods  `json:"minutes"` // minutes without power in them
	Momentary struct {
		D60 int `json:"d60"`
	} `json:"momentary"`
	ArrearsNotices365d int       `json:"arrears_notices_365d"`
	Disconnections365d int       `json:"disconnections_365d"`
	SMS                SMSCounts `json:"sms"`
	ReportedOut        int       `json:"reported_out"` // outages the customer replied still out in, 365 days
	HotlineContacts90d int       `json:"hotline_contacts_90d"`
	LastOutage         *Last     `json:"last_outage"`
}

// Periods are figures over the last 30, 60 and 365 days.
type Periods struct {
	D30  int `json:"d30"`
	D60  int `json:"d60"`
	D365 int `json:"d365"`
}

// SMSCounts are a customer's messages: sent (delivered included),
// delivered, failed (undelivered or failed).
type SMSCounts struct {
	Sent      int `json:"sent"`
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`
}

// Last is a customer's latest interruption.
type Last struct {
	ID         string     `json:"id"`
	Start      time.Time  `json:"start"`
	RestoredAt *time.Time `json:"restored_at"`
	Planned    bool       `json:"planned"`
}

// profileMessages is how many of a customer's latest messages a profile
// reads: a year of outages and bills is far fewer.
const profileMessages = 500

// Profile builds account's profile from its history, its messages and its
// contacts.
func (c *Care) Profile(ctx context.Context, acct contacts.Account) (Profile, error) {
	pr := Profile{Account: acct.Account, Tags: []string{}}
	now := c.clk.Now()
	if err := c.history(ctx, &pr, now); err != nil {
		return pr, err
	}
	f, err := c.bulk(ctx, []string{acct.Account})
	if err != nil {
		return pr, err
	}
	pr.Tags = append(pr.Tags, c.tagsOf(f, acct.Account)...)
	if err := c.calls(ctx, &pr, now); err != nil {
		return pr, err
	}
	var msgs []notify.Sent
	if c.msgs != nil {
		if msgs, err = c.msgs.History(ctx, []string{acct.Account}, profileMessages); err != nil {
			return pr, err
		}
	}
	c.messages(&pr, msgs, now)
	if pr.ArrearsNotices365d+pr.Disconnections365d > 0 {
		pr.Tags = append(pr.Tags, TagPaymentRisk)
	}
	if unreachable(acct, msgs) {
		pr.Tags = append(pr.Tags, TagUnreachable)
	}
	return pr, nil
}

// history fills the outage figures from care_interruptions.
func (c *Care) history(ctx context.Context, pr *Profile, now time.Time) error {
	rows, err := c.db.QueryContext(ctx, `SELECT outage, planned, start_ns, end_ns, reported FROM care_interruptions
		WHERE account = $1 AND start_ns >= $2 ORDER BY start_ns`, pr.Account, now.Add(-365*Day).UnixNano())
	if err != nil {
		return fmt.Errorf("cannot read the history of %s: %w", pr.Account, err)
	}
	defer rows.Close()
	sus := int64(c.cfg.SustainedAfter)
	for rows.Next() {
		var id string
		var planned, start, end, reported int64
		if err := rows.Scan(&id, &planned, &start, &end, &reported); err != nil {
			return fmt.Errorf("cannot read the history of %s: %w", pr.Account, err)
		}
		last := &Last{ID: id, Start: time.Unix(0, start).UTC(), Planned: planned != 0}
		stop := now.UnixNano()
		if end != 0 {
			stop = end
			t := time.Unix(0, end).UTC()
			last.RestoredAt = &t
		}
		pr.LastOutage = last
		pr.ReportedOut += int(reported)
		age := now.Sub(time.Unix(0, start))
		if stop-start < sus {
			if age <= 60*Day {
				pr.Momentary.D60++
			}
			continue
		}
		mins := int((stop - start) / int64(time.Minute))
		for _, p := range []struct {
			d    time.Duration
			n, m *int
		}{{30 * Day, &pr.Outages.D30, &pr.Minutes.D30}, {60 * Day, &pr.Outages.D60, &pr.Minutes.D60}, {365 * Day, &pr.Outages.D365, &pr.Minutes.D365}} {
			if age <= p.d {
				*p.n++
				*p.m += mins
			}
		}
	}
	return rows.Err()
}

func (c *Care) calls(ctx context.Context, pr *Profile, now time.Time) error {
	return c.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM care_calls WHERE account = $1 AND at_ns >= $2`,
		pr.Account, now.Add(-callWindow).UnixNano()).Scan(&pr.HotlineContacts90d)
}

// messages fills the SMS and billing figures from the customer's messages.
func (c *Care) messages(pr *Profile, msgs []notify.Sent, now time.Time) {
	for _, m := range msgs {
		if now.Sub(m.At) > 365*Day {
			continue
		}
		switch m.Status {
		case notify.StatusSent:
			pr.SMS.Sent++
		case notify.StatusDelivered:
			pr.SMS.Sent++
			pr.SMS.Delivered++
		case notify.StatusUndelivered, notify.StatusFailed:
			pr.SMS.Failed++
		}
		switch event.Kind(m.Kind) {
		case event.KindArrears:
			pr.ArrearsNotices365d++
		case event.KindDisconnectNotice:
			pr.Disconnections365d++
		}
	}
}

// hasMobile reports whether acct has a number an SMS may go to.
func hasMobile(acct contacts.Account) bool {
	for _, ct := range acct.Contacts {
		if ct.Verdict.CanSMS() && !ct.OptOut && ct.Phone != "" {
			return true
		}
	}
	return false
}

// unreachable: no valid mobile number, or the last two sends failed.
func unreachable(acct contacts.Account, msgs []notify.Sent) bool {
	if !hasMobile(acct) {
		return true
	}
	failed, looked := 0, 0
	for _, m := range msgs { // newest first
		switch m.Status {
		case notify.StatusSent, notify.StatusDelivered, notify.StatusUndelivered, notify.StatusFailed:
		default:
			continue
		}
		looked++
		if m.Status == notify.StatusUndelivered || m.Status == notify.StatusFailed {
			failed++
		}
		if looked == 2 {
			break
		}
	}
	return failed == 2
}
