package httpapi

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/care"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// Directory is what the workspace reads of the contacts registry.
type Directory interface {
	Account(acct string) (contacts.Account, bool)
	AccountsByPhone(e164 string) []string
	Grid(g string) (contacts.GridInfo, bool)
}

// History is what the workspace reads of the notify outbox.
type History interface {
	History(ctx context.Context, accounts []string, limit int) ([]notify.Sent, error)
	Minutes(ctx context.Context, since time.Time, grids []string) ([]notify.Minute, error)
}

// Overview is what the storm overview and the hotline read of the rules.
type Overview interface {
	AreaStates() []rules.AreaState
	StormMode() bool
	MetersOf(account string) []rules.MeterOutage
}

// workspaceRoutes adds the operators' workspace: the page, logins, the
// audit log, the outage workspace, the hotline, the storm overview and the
// live feed.
func (s *Server) workspaceRoutes(mux *routeMux) {
	a := s.auth
	everyone := []string{RoleAdmin, RoleDispatcher, RoleManager, RoleHotline, RoleIngest}
	operators := []string{RoleAdmin, RoleDispatcher, RoleManager}
	pageRoutes(mux)
	mux.HandleFunc("POST /api/v1/login", s.login)
	mux.HandleFunc("POST /api/v1/logout", s.logout)
	mux.Handle("GET /api/v1/me", a.require(http.HandlerFunc(s.whoAmI), everyone...))
	mux.Handle("GET /api/v1/audit", a.require(http.HandlerFunc(s.auditLog), RoleAdmin))
	if s.deps.Outages == nil || s.deps.Directory == nil {
		return
	}
	mux.Handle("GET /api/v1/outages/{id}/workspace", a.require(http.HandlerFunc(s.workspace), operators...))
	mux.Handle("GET /api/v1/events", a.require(http.HandlerFunc(s.events), operators...))
	if s.deps.History != nil && s.deps.Overview != nil {
		mux.Handle("GET /api/v1/accounts/{account}/messages", a.require(http.HandlerFunc(s.accountMessages), RoleAdmin, RoleDispatcher, RoleManager, RoleHotline))
		mux.Handle("GET /api/v1/hotline", a.require(http.HandlerFunc(s.hotline), RoleAdmin, RoleDispatcher, RoleManager, RoleHotline))
		mux.Handle("GET /api/v1/storm", a.require(http.HandlerFunc(s.storm), operators...))
	}
}

// Customer is one affected customer as the workspace shows it.
type Customer struct {
	Account string   `json:"account"`
	Name    string   `json:"name"`
	Meter   string   `json:"meter"`
	Area    string   `json:"area"`
	Grid    string   `json:"grid"`
	Class   string   `json:"class"`
	Phones  []string `json:"phones"` // in full for pii, masked otherwise; landlines too
	Status  string   `json:"status"` // what notify did ("delivered", "suppressed: landline", …)
	// Reach says why no SMS could reach the customer: landline, invalid,
	// missing, opted_out or failed; "" when one could.
	Reach   string `json:"reach"`
	Powered bool   `json:"powered"`
	// Tags are customer care's: frequent_outage, complaint_risk
	// (docs/interfaces.md §9).
	Tags []string `json:"tags,omitempty"`
}

// Workspace answers GET /api/v1/outages/{id}/workspace: what a manager and
// a dispatcher need of one outage, in the asker's grids only.
type Workspace struct {
	Outage      rules.Outage      `json:"outage"`  // counts of the asker's grids
	Classes     map[string]int    `json:"classes"` // affected customers per class
	Customers   []Customer        `json:"customers"`
	CallList    []Customer        `json:"call_list"`    // no SMS could reach them, or at risk of complaining: phone them
	Dark        []rules.DarkMeter `json:"dark"`         // still dark; each names its customer, one of Customers, by account
	ReportedOut []Customer        `json:"reported_out"` // replied they are still out
	PII         bool              `json:"pii"`          // phones are in full
	// CallListFull: the call list's phones are in full, to be dialled (see
	// canDial); CallListNote says why they are masked when they are not.
	CallListFull bool   `json:"call_list_full"`
	CallListNote string `json:"call_list_note,omitempty"`
}

// canDial reports whether p sees the call list's numbers in full to phone
// the customers no SMS could reach: with pii, or as a dispatcher or the
// manager of the customers' grid (a manager sees only the grids' own
// customers). Each such view is audited (call_list).
func canDial(p principal) bool {
	return p.pii || p.role == RoleDispatcher || p.role == RoleManager
}

// noDial is what a person without the right is told of the call list.
const noDial = "numbers masked: the call list is shown in full to dispatchers, grid managers and people with the pii permission"

// classRank puts life-support, high-risk and important customers first.
var classRank = map[string]int{string(contacts.LifeSupport): 0, string(contacts.HighRisk): 1, string(contacts.Important): 2}

func rankOf(class string) int {
	if r, ok := classRank[class]; ok {
		return r
	}
	return 3
}

func (s *Server) workspace(w http.ResponseWriter, r *http.Request) {
	o, ok := s.outage(w, r)
	if !ok {
		return
	}
	p := principalOf(r)
	began := time.Now()
	ws, visible := s.buildWorkspace(r.Context(), p, o)
	if !visible {
		writeError(w, http.StatusNotFound, "no such outage in your grids: "+o.ID)
		return
	}
	built := time.Now()
	if p.pii && (len(ws.Customers) > 0 || len(ws.Dark) > 0) {
		if !s.audit(w, r, AuditPIIView, o.ID, fmt.Sprintf("workspace: %d customers' numbers", len(ws.Customers))) {
			return
		}
	} else if ws.CallListFull && len(ws.CallList) > 0 {
		if !s.audit(w, r, AuditCallList, o.ID, fmt.Sprintf("call list: %d customers' numbers", len(ws.CallList))) {
			return
		}
	}
	// The page reports these with its own timings (docs/benchmarks.md).
	w.Header().Set("Server-Timing", fmt.Sprintf("build;dur=%.1f, audit;dur=%.1f",
		msSince(began, built), msSince(built, time.Now())))
	writeJSON(w, 200, ws)
}

// buildWorkspace gathers o's workspace for p. It reports false when a
// manager has no customer in o.
func (s *Server) buildWorkspace(ctx context.Context, p principal, o rules.Outage) (Workspace, bool) {
	// notify's figures are read once and serve both the counts and every
	// customer's status: each read scans all of the outage's messages.
	st, stOK := s.stats(ctx, o)
	list := s.visibleCustomers(p, o)
	if stOK {
		list = statusFrom(st, list)
		st = s.within(st, p)
		o.Counts.Notified, o.Counts.Delivered = st.Notified, st.Delivered
	}
	o.CausePhrases = notify.CausePhrases(o.Cause)
	o.AreaNames = s.areaNames(o.Areas)
	ver, _ := s.deps.Outages.VerificationIn(o.ID, p.scope())
	ws := Workspace{Outage: o, Classes: map[string]int{}, Customers: make([]Customer, 0, len(list)),
		CallList: []Customer{}, Dark: []rules.DarkMeter{}, ReportedOut: []Customer{}, PII: p.pii, CallListFull: canDial(p)}
	if !ws.CallListFull {
		ws.CallListNote = noDial
	}
	if p.role == RoleManager && len(list) == 0 {
		return ws, false
	}
	byAccount := map[string]*Customer{}
	for _, c := range list {
		cu := s.customer(p, c)
		ws.Customers = append(ws.Customers, cu)
	}
	tags := s.tagsOf(ctx, accountsOf(list))
	for i := range ws.Customers {
		ws.Customers[i].Tags = tags[ws.Customers[i].Account]
	}
	// Critical customers first, then those at risk of complaining.
	slices.SortStableFunc(ws.Customers, func(a, b Customer) int {
		return cmp.Or(cmp.Compare(rankOf(a.Class), rankOf(b.Class)),
			boolFirst(hasTag(a.Tags, care.TagComplaintRisk), hasTag(b.Tags, care.TagComplaintRisk)),
			boolFirst(!a.Powered, !b.Powered), cmp.Compare(a.Account, b.Account))
	})
	seen := map[string]bool{}
	for i := range ws.Customers {
		c := &ws.Customers[i]
		byAccount[c.Account] = c
		if seen[c.Account] {
			continue
		}
		seen[c.Account] = true
		ws.Classes[c.Class]++
		if c.Reach != "" || hasTag(c.Tags, care.TagComplaintRisk) {
			ws.CallList = append(ws.CallList, s.dialable(p, *c))
		}
	}
	for _, d := range ver.Dark {
		if _, ok := byAccount[d.Account]; ok {
			ws.Dark = append(ws.Dark, d)
		}
	}
	for _, a := range ver.ReportedOut {
		if c, ok := byAccount[a]; ok {
			ws.ReportedOut = append(ws.ReportedOut, *c)
		}
	}
	return ws, true
}

func msSince(from, to time.Time) float64 { return float64(to.Sub(from).Microseconds()) / 1000 }

func boolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// visibleCustomers is o's customer list in p's grids.
func (s *Server) visibleCustomers(p principal, o rules.Outage) []rules.AffectedCustomer {
	var list []rules.AffectedCustomer
	if p.role == RoleManager {
		for _, g := range p.grids {
			l, _ := s.deps.Outages.Customers(o.ID, g)
			list = append(list, l...)
		}
	} else {
		list, _ = s.deps.Outages.Customers(o.ID, "")
	}
	return list
}

// dialable is call-list entry c with its phones in full when p may dial
// them.
func (s *Server) dialable(p principal, c Customer) Customer {
	if p.pii || !canDial(p) {
		return c
	}
	if acct, ok := s.deps.Directory.Account(c.Account); ok {
		c.Phones = phonesFor(principal{pii: true}, acct.Contacts)
	}
	return c
}

// customer renders c for p: phones from the registry, in full for pii.
func (s *Server) customer(p principal, c rules.AffectedCustomer) Customer {
	cu := Customer{Account: c.Account, Name: c.Name, Meter: c.Meter, Area: c.Area, Grid: c.Grid, Class: c.Class,
		Phones: []string{}, Status: c.Status, Powered: c.Powered}
	acct, ok := s.deps.Directory.Account(c.Account)
	if !ok {
		cu.Phones, cu.Reach = c.Phones, "missing"
		return cu
	}
	cu.Phones = phonesFor(p, acct.Contacts)
	cu.Reach = reach(acct.Contacts, c.Status)
	return cu
}

// phonesFor lists the numbers of cs that can be called, for p's eyes.
func phonesFor(p principal, cs []contacts.Contact) []string {
	out := []string{}
	for _, ct := range cs {
		if ct.Phone == "" {
			continue
		}
		if p.pii {
			out = append(out, ct.Phone)
		} else {
			out = append(out, logging.Phone(ct.Phone))
		}
	}
	return out
}

// reach says why no SMS can reach a customer with contacts cs whose latest
// message has status: "" when one can.
func reach(cs []contacts.Contact, status string) string {
	var landline, optedOut, invalid bool
	for _, ct := range cs {
		switch {
		case ct.Verdict == contacts.Landline:
			landline = true
		case ct.Verdict == contacts.Invalid:
			invalid = true
		case ct.Verdict == contacts.Missing:
		case ct.OptOut:
			optedOut = true
		default:
			if failed(status) {
				return "failed"
			}
			return ""
		}
	}
	switch {
	case optedOut:
		return "opted_out"
	case landline:
		return "landline"
	case invalid:
		return "invalid"
	}
	return "missing"
}

// failed reports whether a notify status says the message did not arrive.
func failed(status string) bool {
	for _, p := range []string{notify.StatusFailed, notify.StatusUndelivered, notify.StatusRejected} {
		if strings.HasPrefix(status, p) {
			return true
		}
	}
	return false
}
