package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// Audited actions.
const (
	AuditConfirm     = "confirm"      // a dispatcher confirmed a restoration
	AuditExport      = "export"       // a customer list left as CSV
	AuditPIIView     = "pii_view"     // phone numbers shown in full
	AuditCallList    = "call_list"    // the call list's numbers shown in full to dial them
	AuditLookup      = "lookup"       // a hotline lookup of one customer
	AuditLogin       = "login"        // a person logged in
	AuditLoginFailed = "login_failed" // a wrong name or password
)

// migrations are the tables of people's sessions and the audit log.
// Append, never edit.
var migrations = []string{
	`CREATE TABLE http_sessions (
		id_hash TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL,
		created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)`,
	`CREATE INDEX http_sessions_expiry ON http_sessions (expires_at)`,
	`CREATE TABLE audit_log (
		id TEXT PRIMARY KEY, at BIGINT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
		action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL, remote TEXT NOT NULL)`,
	`CREATE INDEX audit_log_at ON audit_log (at)`,
}

// Store keeps the web page's sessions and the audit log in gridbell's store,
// so every instance of a cluster accepts a login and all write one log.
type Store struct {
	db *store.DB
}

// OpenStore migrates the sessions and audit tables.
func OpenStore(ctx context.Context, db *store.DB) (*Store, error) {
	if err := db.Migrate(ctx, "httpapi", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	At     time.Time `json:"at"`
	Name   string    `json:"name"`
	Role   string    `json:"role"`
	Action string    `json:"action"`
	Target string    `json:"target"` // outage id, account, or what was looked up
	Detail string    `json:"detail"`
	Remote string    `json:"remote"`
}

// Audit records e. The caller decides whether a failure stops the request.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	id := make([]byte, 12)
	rand.Read(id)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO audit_log (id, at, name, role, action, target, detail, remote)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, hex.EncodeToString(id), e.At.UnixNano(), e.Name, e.Role,
		e.Action, e.Target, e.Detail, e.Remote); err != nil {
		return fmt.Errorf("cannot write audit log: %w", err)
	}
	return nil
}

// AuditQuery selects audit entries; zero fields select all.
type AuditQuery struct {
	Action, Name, Target string
	Before               time.Time
	Limit                int
}

// AuditLog lists entries newest first.
func (s *Store) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	before := int64(1<<63 - 1)
	if !q.Before.IsZero() {
		before = q.Before.UnixNano()
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 200
	}
	rows, err := s.db.QueryContext(ctx, `SELECT at, name, role, action, target, detail, remote FROM audit_log
		WHERE at < $1 AND ($2 = '' OR action = $2) AND ($3 = '' OR name = $3) AND ($4 = '' OR target = $4)
		ORDER BY at DESC LIMIT $5`, before, q.Action, q.Name, q.Target, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("cannot read audit log: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&at, &e.Name, &e.Role, &e.Action, &e.Target, &e.Detail, &e.Remote); err != nil {
			return nil, fmt.Errorf("cannot read audit log: %w", err)
		}
		e.At = time.Unix(0, at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read audit log: %w", err)
	}
	return out, nil
}

// audit records what p did. It reports false, having answered 503, when the
// log cannot be written: an export or PII view that cannot be audited is
// not served.
func (s *Server) audit(w http.ResponseWriter, r *http.Request, action, target, detail string) bool {
	if s.deps.Store == nil {
		return true // no store wired (unit tests without one): nothing to write to
	}
	p := principalOf(r)
	err := s.deps.Store.Audit(r.Context(), AuditEntry{At: time.Now(), Name: p.name, Role: p.role,
		Action: action, Target: target, Detail: detail, Remote: r.RemoteAddr})
	if err != nil {
		s.log.Error().Err(err).Str("action", action).Msg("cannot audit")
		writeError(w, http.StatusServiceUnavailable, "cannot write the audit log")
		return false
	}
	return true
}

// auditLog answers GET /api/v1/audit (admin).
func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	if s.deps.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "no store")
		return
	}
	qv := r.URL.Query()
	q := AuditQuery{Action: qv.Get("action"), Name: qv.Get("name"), Target: qv.Get("target")}
	if v := qv.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive number")
			return
		}
		q.Limit = n
	}
	if v := qv.Get("before"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "before must be an RFC 3339 time")
			return
		}
		q.Before = t
	}
	list, err := s.deps.Store.AuditLog(r.Context(), q)
	if err != nil {
		s.log.Error().Err(err).Msg("cannot read audit log")
		writeError(w, http.StatusInternalServerError, "cannot read the audit log")
		return
	}
	writeJSON(w, 200, map[string]any{"entries": list})
}
