// Package httpapi serves gridbell's HTTP API for operators (docs/interfaces.md §6):
// outages, affected-customer lists, restoration verification, dispatcher
// confirmation, contact quality, health and metrics, the web page at /, and
// mounts ingest's event endpoints and notify's Twilio webhooks. It sits at
// the end of the flow and only reads the other stages through the small
// interfaces below.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// Outages is what the API reads from the rules engine.
// Views take the grids the caller may see (nil: all; scope.go).
type Outages interface {
	OutagesIn(status string, grids []string) []rules.Outage
	OutageIn(id string, grids []string) (rules.Outage, bool)
	Customers(id, grid string) ([]rules.AffectedCustomer, bool)
	VerificationIn(id string, grids []string) (rules.Verification, bool)
	ConfirmWithReason(ctx context.Context, id, by, reason string) error
}

// Deliveries is what the API reads from the notify outbox.
type Deliveries interface {
	StatsOf(ctx context.Context, refs []string) (notify.RefStats, error)
}

// Quality is what the API reads from the contacts registry.
// Account tells a manager's customers from others'.
type Quality interface {
	Quality(grid string) contacts.Report
	Account(acct string) (contacts.Account, bool)
}

// Deps are the parts the server shows. Any handler may be nil when that
// part is off.
type Deps struct {
	Outages       Outages
	Deliveries    Deliveries
	Quality       Quality
	Contacts      ContactsImporter // POST /api/v1/contacts/import
	ContactsDir   string           // where an uploaded file is spooled and its reject file kept (data_dir)
	OMSEvents     http.Handler     // POST /api/v1/oms/events
	Billing       http.Handler     // POST /api/v1/billing/events
	TwilioStatus  http.Handler     // POST /twilio/status (signed by Twilio, no token)
	TwilioInbound http.Handler     // POST /twilio/inbound
	DeadLetters   DeadLetters
	Handler       ingest.Handler // where replayed dead letters go
	Ready         func() error   // nil when ready, else what is not
	Metrics       *metrics.Registry
	Store         *Store    // sessions and the audit log; nil = no logins, nothing audited
	Directory     Directory // customers' names, phones and grids (workspace.go)
	History       History   // messages per customer and per minute
	Overview      Overview  // areas' states, storm mode, a customer's meters
	Care          Care      // reliability, profiles, follow-up lists, calls; nil = off
}

// Server is the HTTP API.
type Server struct {
	cfg     Config
	deps    Deps
	auth    authenticator
	live    *liveFeed // server-sent events (events.go)
	logins  *loginGate
	proxies []netip.Prefix // http.trusted_proxies
	log     zerolog.Logger
	srv     *http.Server

	metricsHandler http.Handler
}

// New returns a server; Run starts it.
func New(cfg Config, auth AuthConfig, deps Deps, log zerolog.Logger) *Server {
	if deps.Metrics == nil {
		deps.Metrics = metrics.Default
	}
	cfg.Defaults()
	s := &Server{cfg: cfg, deps: deps, auth: newAuthenticator(auth, deps.Store), logins: newLoginGate(), log: log}
	s.proxies, _ = parseProxies(cfg.TrustedProxies) // Validate has refused bad ones
	s.live = &liveFeed{s: s, stop: make(chan struct{})}
	s.metricsHandler = deps.Metrics.Handler(promLog{log})
	s.srv = httpServer(cfg, s.Handler(), log)
	s.srv.RegisterOnShutdown(s.live.close) // event streams end, so Shutdown need not wait them out
	return s
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	return guard(s.proxies, instrument(s.mux()))
}

// mux registers the routes.
func (s *Server) mux() *routeMux {
	mux := newRouteMux()
	a := s.auth
	read := []string{RoleAdmin, RoleDispatcher, RoleManager}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("GET /api/v1/openapi.json", serveOpenAPI)
	s.workspaceRoutes(mux)
	s.careRoutes(mux)
	mux.Handle("GET /api/v1/outages", a.require(http.HandlerFunc(s.listOutages), read...))
	mux.Handle("GET /api/v1/outages/{id}", a.require(http.HandlerFunc(s.getOutage), read...))
	mux.Handle("GET /api/v1/outages/{id}/customers", a.require(http.HandlerFunc(s.customers), read...))
	mux.Handle("GET /api/v1/outages/{id}/verification", a.require(http.HandlerFunc(s.verification), RoleAdmin, RoleDispatcher, RoleManager))
	mux.Handle("POST /api/v1/outages/{id}/confirm", a.require(http.HandlerFunc(s.confirm), RoleAdmin, RoleDispatcher))
	mux.Handle("GET /api/v1/contacts/quality", a.require(http.HandlerFunc(s.quality), read...))
	if s.deps.Contacts != nil {
		mux.Handle("POST /api/v1/contacts/import", a.require(readFor(s.cfg.ImportReadTimeout, s.cfg.WriteTimeout, http.HandlerFunc(s.importContacts)), RoleAdmin))
	}
	if s.deps.OMSEvents != nil {
		mux.Handle("POST /api/v1/oms/events", a.require(s.deps.OMSEvents, RoleAdmin, RoleIngest))
	}
	if s.deps.Billing != nil {
		mux.Handle("POST /api/v1/billing/events", a.require(s.deps.Billing, RoleAdmin, RoleIngest))
	}
	if s.deps.DeadLetters != nil && s.deps.Handler != nil {
		mux.Handle("GET /api/v1/deadletters", a.require(http.HandlerFunc(s.listDeadLetters), RoleAdmin))
		mux.Handle("POST /api/v1/deadletters/replay", a.require(http.HandlerFunc(s.replayDeadLetters), RoleAdmin))
	}
	hook := min(webhookReadTimeout, s.cfg.ReadTimeout)
	if s.deps.TwilioStatus != nil {
		mux.Handle("POST /twilio/status", readFor(hook, s.cfg.WriteTimeout, s.deps.TwilioStatus))
	}
	if s.deps.TwilioInbound != nil {
		mux.Handle("POST /twilio/inbound", readFor(hook, s.cfg.WriteTimeout, s.deps.TwilioInbound))
	}
	return mux
}

// Run serves until ctx is done, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.auth.cfg.open() {
		s.log.Warn().Str("listen", ln.Addr().String()).Msg("no auth.tokens or auth.users configured: the API is open, which is allowed only on a loopback address")
	}
	s.log.Info().Str("listen", ln.Addr().String()).Msg("http api serving")
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

// ready asks Deps.Ready and sets gridbell_ready to match.
func (s *Server) ready() error {
	var err error
	if s.deps.Ready != nil {
		err = s.deps.Ready()
	}
	up := 0.0
	if err == nil {
		up = 1
	}
	readyGauge.Set(up)
	return err
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	s.ready() // gridbell_ready as of this scrape
	s.metricsHandler.ServeHTTP(w, r)
}

// stats reads notify's figures over an outage's id and its aliases: a
// record first seen by meters and then joined by the OMS keeps the meters'
// id as an alias, and the intents already sent carry that id.
func (s *Server) stats(ctx context.Context, o rules.Outage) (notify.RefStats, bool) {
	if s.deps.Deliveries == nil {
		return notify.RefStats{}, false
	}
	st, err := s.deps.Deliveries.StatsOf(ctx, append([]string{o.ID}, o.Aliases...))
	if err != nil {
		s.log.Warn().Err(err).Str("outage", o.ID).Msg("cannot read delivery figures")
		return notify.RefStats{}, false
	}
	return st, true
}

// withCounts fills the notify side of an outage's counts, over p's
// customers alone.
func (s *Server) withCounts(ctx context.Context, o rules.Outage, p principal) rules.Outage {
	if st, ok := s.stats(ctx, o); ok {
		st = s.within(st, p)
		o.Counts.Notified, o.Counts.Delivered = st.Notified, st.Delivered
	}
	o.CausePhrases = notify.CausePhrases(o.Cause)
	o.AreaNames = s.areaNames(o.Areas)
	return o
}

func (s *Server) listOutages(w http.ResponseWriter, r *http.Request) {
	if s.deps.Outages == nil {
		writeJSON(w, 200, map[string]any{"outages": []rules.Outage{}})
		return
	}
	p := principalOf(r)
	list := s.outageList(r.URL.Query().Get("status"), p.scope())
	for i := range list {
		list[i] = s.withCounts(r.Context(), list[i], p)
	}
	if list == nil {
		list = []rules.Outage{}
	}
	writeJSON(w, 200, map[string]any{"outages": list})
}

func (s *Server) getOutage(w http.ResponseWriter, r *http.Request) {
	o, ok := s.outage(w, r)
	if !ok {
		return
	}
	p := principalOf(r)
	writeJSON(w, 200, s.withProactive(r.Context(), s.withCounts(r.Context(), o, p), p))
}

// outage is the outage the path names, as the caller may see it: 404 when
// there is none, or none of the caller's customers are in it.
func (s *Server) outage(w http.ResponseWriter, r *http.Request) (rules.Outage, bool) {
	if s.deps.Outages == nil {
		writeError(w, http.StatusNotFound, "no such outage")
		return rules.Outage{}, false
	}
	o, ok := s.deps.Outages.OutageIn(r.PathValue("id"), principalOf(r).scope())
	if !ok {
		writeError(w, http.StatusNotFound, "no such outage: "+r.PathValue("id"))
	}
	return o, ok
}

func (s *Server) customers(w http.ResponseWriter, r *http.Request) {
	o, ok := s.outage(w, r)
	if !ok {
		return
	}
	p := principalOf(r)
	grid, ok := requestedGrid(w, r, p)
	if !ok {
		return
	}
	list, _ := s.deps.Outages.Customers(o.ID, grid)
	list = s.withStatus(r.Context(), o, list)
	out := make([]rules.AffectedCustomer, 0, len(list))
	for _, c := range list {
		if p.canSeeGrid(c.Grid) {
			out = append(out, c)
		}
	}
	if r.URL.Query().Get("format") == "csv" {
		if !s.audit(w, r, AuditExport, o.ID, fmt.Sprintf("customers.csv grid=%q rows=%d", grid, len(out))) {
			return
		}
		writeCustomersCSV(w, o.ID, out, s.tagsOf(r.Context(), accountsOf(out)))
		return
	}
	writeJSON(w, 200, map[string]any{"customers": out})
}

// withStatus overwrites each customer's status with what notify did.
func (s *Server) withStatus(ctx context.Context, o rules.Outage, list []rules.AffectedCustomer) []rules.AffectedCustomer {
	st, ok := s.stats(ctx, o)
	if !ok {
		return list
	}
	return statusFrom(st, list)
}

// statusFrom overwrites each customer's status with st's.
func statusFrom(st notify.RefStats, list []rules.AffectedCustomer) []rules.AffectedCustomer {
	for i := range list {
		if v := st.Accounts[list[i].Account]; v != "" {
			list[i].Status = v
		}
	}
	return list
}

func (s *Server) verification(w http.ResponseWriter, r *http.Request) {
	if s.deps.Outages == nil {
		writeError(w, http.StatusNotFound, "no such outage")
		return
	}
	v, ok := s.deps.Outages.VerificationIn(r.PathValue("id"), principalOf(r).scope())
	if !ok {
		writeError(w, http.StatusNotFound, "no such outage: "+r.PathValue("id"))
		return
	}
	writeJSON(w, 200, v)
}

func (s *Server) quality(w http.ResponseWriter, r *http.Request) {
	if s.deps.Quality == nil {
		writeError(w, http.StatusServiceUnavailable, "contacts not loaded")
		return
	}
	p := principalOf(r)
	grid, ok := requestedGrid(w, r, p)
	if !ok {
		return
	}
	rep := s.deps.Quality.Quality(grid)
	if p.role == RoleManager {
		rep = rep.Only(p.grids)
	}
	writeJSON(w, 200, rep)
}

// requestedGrid is the ?grid= of r, refused with 403 when p may not see it.
func requestedGrid(w http.ResponseWriter, r *http.Request, p principal) (string, bool) {
	grid := r.URL.Query().Get("grid")
	if grid != "" && !p.canSeeGrid(grid) {
		writeError(w, http.StatusForbidden, "grid "+grid+" is not yours")
		return "", false
	}
	return grid, true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
