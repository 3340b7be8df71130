package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/care"
	"github.com/gridbell/gridbell/rules"
)

// Care is what the API reads of customer care (docs/interfaces.md §9).
// Answers take the grids the caller may see (nil: all).
type Care interface {
	Reliability(ctx context.Context, q care.Query) (care.Report, error)
	Profile(ctx context.Context, acct contacts.Account) (care.Profile, error)
	Followup(ctx context.Context, id string, grids []string) ([]care.FollowupCustomer, error)
	OutageProactive(ctx context.Context, id string, grids []string) (care.Proactive, error)
	RecordCall(ctx context.Context, account, outage string, at time.Time) error
	Tags(ctx context.Context, accounts []string) (map[string][]string, error)
}

func (s *Server) careRoutes(mux *routeMux) {
	if s.deps.Care == nil {
		return
	}
	read := []string{RoleAdmin, RoleDispatcher, RoleManager}
	mux.Handle("GET /api/v1/reliability", s.auth.require(http.HandlerFunc(s.reliability), read...))
	mux.Handle("GET /api/v1/outages/{id}/followup", s.auth.require(http.HandlerFunc(s.followup), read...))
	if s.deps.Directory != nil {
		mux.Handle("GET /api/v1/customers/{account}/profile", s.auth.require(http.HandlerFunc(s.profile), RoleAdmin, RoleDispatcher, RoleManager, RoleHotline))
	}
}

// reliability answers GET /api/v1/reliability?from=&to=&by=&planned=&format=csv.
// from and to are RFC 3339 times or dates (Asia/Shanghai midnight); the
// default is the last 30 days.
func (s *Server) reliability(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	qs := r.URL.Query()
	now := time.Now()
	q := care.Query{By: qs.Get("by"), Planned: qs.Get("planned"), Grids: p.scope(), From: now.Add(-30 * care.Day), To: now}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if v := qs.Get(f.name); v != "" {
			t, err := parseWhen(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, f.name+": "+err.Error())
				return
			}
			*f.t = t
		}
	}
	rep, err := s.deps.Care.Reliability(r.Context(), q)
	if errors.Is(err, care.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.log.Error().Err(err).Msg("cannot compute reliability")
		writeError(w, http.StatusInternalServerError, "cannot compute reliability")
		return
	}
	if qs.Get("format") == "csv" {
		if !s.audit(w, r, AuditExport, "reliability", fmt.Sprintf("reliability.csv by=%s rows=%d", rep.By, len(rep.Rows))) {
			return
		}
		writeReliabilityCSV(w, rep)
		return
	}
	writeJSON(w, 200, rep)
}

// parseWhen reads an RFC 3339 time or a date, taken at midnight in
// Asia/Shanghai (care.DayZone: where the report's daily rollup begins a day).
func parseWhen(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02", v, care.DayZone)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date (2026-11-01) or an RFC 3339 time", v)
	}
	return t, nil
}

func writeReliabilityCSV(w http.ResponseWriter, rep care.Report) {
	header := []string{rep.By, "customers_served", "interruptions", "customer_minutes", "momentary", "planned", "unplanned",
		"saifi", "saidi", "caidi", "maifi", "frequent_outage_customers", "affected", "notified", "called", "called_before_sms", "median_lead_s"}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	i := strconv.Itoa
	name := fmt.Sprintf("reliability-%s-%s.csv", rep.From.In(care.DayZone).Format("20060102"), rep.To.In(care.DayZone).Format("20060102"))
	writeCSV(w, `attachment; filename="`+name+`"`, header, func(yield func([]string)) {
		for _, r := range append(rep.Rows, rep.Total) {
			pr := r.Proactive
			yield([]string{r.Key, i(r.CustomersServed), i(r.Interruptions), f(r.CustomerMinutes), i(r.Momentary), i(r.Planned), i(r.Unplanned),
				f(r.SAIFI), f(r.SAIDI), f(r.CAIDI), f(r.MAIFI), i(r.FrequentOutageCustomers),
				i(pr.Affected), i(pr.Notified), i(pr.Called), i(pr.CalledBeforeSMS), f(pr.MedianLeadS)})
		}
	})
}

// ProfileView is a customer's profile with who the customer is.
type ProfileView struct {
	care.Profile
	Name   string   `json:"name"`
	Grid   string   `json:"grid"`
	Class  string   `json:"class"`
	Phones []string `json:"phones"`
}

// profile answers GET /api/v1/customers/{account}/profile.
func (s *Server) profile(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	a := r.PathValue("account")
	acct, ok := s.deps.Directory.Account(a)
	if !ok || !p.canSeeGrid(acct.Grid) {
		writeError(w, http.StatusNotFound, "no such customer in your grids: "+a)
		return
	}
	pr, err := s.deps.Care.Profile(r.Context(), acct)
	if err != nil {
		s.log.Error().Err(err).Msg("cannot build a customer profile")
		writeError(w, http.StatusInternalServerError, "cannot build the customer's profile")
		return
	}
	v := ProfileView{Profile: pr, Name: acct.Name, Grid: acct.Grid, Class: string(acct.Class), Phones: phonesFor(p, acct.Contacts)}
	if p.pii && !s.audit(w, r, AuditPIIView, a, "profile") {
		return
	}
	writeJSON(w, 200, v)
}

// followup answers GET /api/v1/outages/{id}/followup: the customers to
// call back after the restoration, critical first.
func (s *Server) followup(w http.ResponseWriter, r *http.Request) {
	o, ok := s.outage(w, r)
	if !ok {
		return
	}
	p := principalOf(r)
	list, err := s.deps.Care.Followup(r.Context(), o.ID, p.scope())
	if err != nil {
		s.log.Error().Err(err).Msg("cannot build a follow-up list")
		writeError(w, http.StatusInternalServerError, "cannot build the follow-up list")
		return
	}
	if r.URL.Query().Get("format") == "csv" {
		if !s.audit(w, r, AuditExport, o.ID, fmt.Sprintf("followup.csv rows=%d", len(list))) {
			return
		}
		writeCSV(w, csvDisposition("followup", o.ID), []string{"account", "name", "grid", "area", "class", "tags", "sustained", "called", "minutes"},
			func(yield func([]string)) {
				for _, c := range list {
					yield([]string{c.Account, c.Name, c.Grid, c.Area, c.Class, strings.Join(c.Tags, " "), strconv.Itoa(c.Sustained), strconv.FormatBool(c.Called), strconv.Itoa(c.Minutes)})
				}
			})
		return
	}
	writeJSON(w, 200, map[string]any{"outage_id": o.ID, "status": o.Status, "restored_at": o.RestoredAt, "customers": list})
}

// OutageView is one outage with its proactive figures (docs/interfaces.md §9).
type OutageView struct {
	rules.Outage
	Proactive *care.Proactive `json:"proactive,omitempty"`
}

// withProactive adds o's proactive block for p's grids.
func (s *Server) withProactive(ctx context.Context, o rules.Outage, p principal) any {
	if s.deps.Care == nil {
		return o
	}
	pr, err := s.deps.Care.OutageProactive(ctx, o.ID, p.scope())
	if err != nil {
		s.log.Warn().Err(err).Str("outage", o.ID).Msg("cannot read the proactive figures")
		return o
	}
	return OutageView{Outage: o, Proactive: &pr}
}

// noteCall records a hotline lookup of a customer: the call of a customer
// in an outage counts against that outage.
func (s *Server) noteCall(ctx context.Context, hc HotlineCustomer) {
	if s.deps.Care == nil {
		return
	}
	outage := ""
	if hc.InOutage && hc.Outage != nil {
		outage = hc.Outage.ID
	}
	if err := s.deps.Care.RecordCall(ctx, hc.Account, outage, time.Now()); err != nil {
		s.log.Warn().Err(err).Msg("cannot record a hotline call")
	}
}

// tagsOf reads the care tags of accounts; none when care is off or fails.
func (s *Server) tagsOf(ctx context.Context, accounts []string) map[string][]string {
	if s.deps.Care == nil || len(accounts) == 0 {
		return nil
	}
	t, err := s.deps.Care.Tags(ctx, accounts)
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot read customer tags")
		return nil
	}
	return t
}

func hasTag(tags []string, t string) bool { return slices.Contains(tags, t) }
