package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/care"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// historyLimit is how many messages a customer's history shows.
const historyLimit = 50

// SentView is one message of a customer's history, its phone shown for
// the asker's eyes.
type SentView struct {
	notify.Sent
	Delivered bool `json:"delivered"`
	Failed    bool `json:"failed"`
}

// HotlineCustomer is what the 95598 agent or IVR learns of one customer.
type HotlineCustomer struct {
	Account  string        `json:"account"`
	Name     string        `json:"name"`
	Grid     string        `json:"grid"`
	Class    string        `json:"class"`
	Phones   []string      `json:"phones"`
	State    string        `json:"state"`     // out, back, powered or unknown: see customerState
	InOutage bool          `json:"in_outage"` // a live outage holds it and it is not verified back (state out or unknown)
	Powered  bool          `json:"powered"`   // state back or powered: every meter verified powered
	Outage   *rules.Outage `json:"outage"`    // the live outage, else the latest one; nil = none
	Messages []SentView    `json:"messages"`  // newest first
	// Tags and Profile are customer care's (docs/interfaces.md §9); the
	// lookup of a customer in an outage counts as that customer's call.
	Tags    []string      `json:"tags"`
	Profile *care.Profile `json:"profile,omitempty"`
}

// hotline answers GET /api/v1/hotline?q=ACCOUNT-or-PHONE: is this customer
// in a known outage, since when, the ETR, and which SMS went out.
func (s *Server) hotline(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		writeError(w, http.StatusBadRequest, "q (an account or a phone number) is required")
		return
	}
	accounts, by := s.lookup(q)
	out := []HotlineCustomer{}
	for _, a := range accounts {
		acct, ok := s.deps.Directory.Account(a)
		if !ok || !p.canSeeGrid(acct.Grid) {
			continue
		}
		hc, err := s.hotlineCustomer(r.Context(), p, acct)
		if err != nil {
			s.log.Error().Err(err).Msg("cannot look a customer up")
			writeError(w, http.StatusInternalServerError, "cannot read the customer's messages")
			return
		}
		out = append(out, hc)
	}
	targets := make([]string, len(out))
	for i, c := range out {
		targets[i] = c.Account
	}
	if !s.audit(w, r, AuditLookup, strings.Join(targets, " "), by) {
		return
	}
	if len(out) == 0 {
		// The same answer whether the customer is in another grid or
		// nowhere: a manager learns nothing of other grids from it.
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no customer of yours found for that account or number", "customers": out})
		return
	}
	writeJSON(w, 200, map[string]any{"customers": out})
}

// lookup finds the accounts q names: an account number, else every
// account holding the phone number q once cleaned. by says which, for the
// audit log, with the number masked.
func (s *Server) lookup(q string) (accounts []string, by string) {
	if _, ok := s.deps.Directory.Account(q); ok {
		return []string{q}, "account " + q
	}
	seen := map[string]bool{}
	var phones []string
	for _, c := range contacts.Clean(q) {
		if c.Phone == "" {
			continue
		}
		phones = append(phones, logging.Phone(c.Phone))
		for _, a := range s.deps.Directory.AccountsByPhone(c.Phone) {
			if !seen[a] {
				seen[a] = true
				accounts = append(accounts, a)
			}
		}
	}
	if len(phones) == 0 {
		return nil, "an unknown account or invalid number"
	}
	return accounts, "phone " + strings.Join(phones, " ")
}

func (s *Server) hotlineCustomer(ctx context.Context, p principal, acct contacts.Account) (HotlineCustomer, error) {
	hc := HotlineCustomer{Account: acct.Account, Name: acct.Name, Grid: acct.Grid, Class: string(acct.Class),
		Phones: phonesFor(p, acct.Contacts)}
	meters := s.deps.Overview.MetersOf(acct.Account)
	for _, m := range meters {
		if m.Outage == nil {
			continue
		}
		live := m.Outage.Status == "active" || m.Outage.Status == "scheduled"
		if hc.Outage == nil || (live && !hc.InOutage) || (live == hc.InOutage && later(m.Outage, hc.Outage)) {
			o := *m.Outage
			o.CausePhrases = notify.CausePhrases(o.Cause)
			o.AreaNames = s.areaNames(o.Areas)
			hc.Outage, hc.InOutage = &o, live
		}
	}
	if grids := p.scope(); hc.Outage != nil && grids != nil {
		// The meter's outage is the whole one: a manager gets it as the
		// outage routes give it, with the areas and counts of its grids.
		o, ok := rules.Outage{}, false
		if s.deps.Outages != nil {
			o, ok = s.deps.Outages.OutageIn(hc.Outage.ID, grids)
		}
		hc.Outage, hc.InOutage = nil, hc.InOutage && ok
		if ok {
			o.CausePhrases, o.AreaNames = notify.CausePhrases(o.Cause), s.areaNames(o.Areas)
			hc.Outage = &o
		}
	}
	hc.State = customerState(meters)
	hc.Powered = hc.State == rules.MeterBack || hc.State == rules.MeterPowered
	hc.InOutage = hc.InOutage && !hc.Powered
	msgs, err := s.messages(ctx, p, acct.Account)
	hc.Messages = msgs
	hc.Tags = []string{}
	if s.deps.Care != nil && err == nil {
		s.noteCall(ctx, hc)
		pr, perr := s.deps.Care.Profile(ctx, acct)
		if perr != nil {
			return hc, perr
		}
		hc.Profile, hc.Tags = &pr, pr.Tags
	}
	return hc, err
}

// customerState is one state for a customer from its meters': out when
// any meter is out, else unknown when any is unknown (or it has none),
// else back when any is verified back while its outage goes on, else
// powered.
func customerState(meters []rules.MeterOutage) string {
	if len(meters) == 0 {
		return rules.MeterUnknown
	}
	rank := map[string]int{rules.MeterPowered: 0, rules.MeterBack: 1, rules.MeterUnknown: 2, rules.MeterOut: 3}
	st := rules.MeterPowered
	for _, m := range meters {
		if rank[m.State] > rank[st] {
			st = m.State
		}
	}
	return st
}

func later(a, b *rules.Outage) bool {
	return a.Start != nil && (b.Start == nil || a.Start.After(*b.Start))
}

// messages is account's history for p's eyes.
func (s *Server) messages(ctx context.Context, p principal, account string) ([]SentView, error) {
	list, err := s.deps.History.History(ctx, []string{account}, historyLimit)
	if err != nil {
		return nil, err
	}
	out := make([]SentView, len(list))
	for i, m := range list {
		if !p.pii {
			m.Phone = logging.Phone(m.Phone)
		}
		out[i] = SentView{Sent: m, Delivered: m.Status == notify.StatusDelivered, Failed: failed(m.Status)}
	}
	return out, nil
}

// accountMessages answers GET /api/v1/accounts/{account}/messages: a
// customer's message history (which kind, when, delivered or failed).
func (s *Server) accountMessages(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	a := r.PathValue("account")
	acct, ok := s.deps.Directory.Account(a)
	if !ok || !p.canSeeGrid(acct.Grid) {
		writeError(w, http.StatusNotFound, "no such customer in your grids: "+a)
		return
	}
	msgs, err := s.messages(r.Context(), p, a)
	if err != nil {
		s.log.Error().Err(err).Msg("cannot read message history")
		writeError(w, http.StatusInternalServerError, "cannot read the customer's messages")
		return
	}
	if p.pii && len(msgs) > 0 && !s.audit(w, r, AuditPIIView, a, fmt.Sprintf("message history: %d messages", len(msgs))) {
		return
	}
	writeJSON(w, 200, map[string]any{"account": a, "name": acct.Name, "messages": msgs})
}
