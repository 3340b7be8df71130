package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// sessionCookie names the web page's session cookie.
const sessionCookie = "gridbell_session"

// session is one person's login. Only a hash of its id is stored: a copy of
// the table does not let anyone in.
type session struct {
	name    string
	csrf    string
	expires time.Time
}

func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newSession stores a session for name and returns its id.
func (s *Store) newSession(ctx context.Context, name string, ttl time.Duration) (string, session, error) {
	id, now := randomToken(), time.Now()
	sess := session{name: name, csrf: randomToken(), expires: now.Add(ttl)}
	// Expired sessions go when someone logs in: no sweeper to run.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM http_sessions WHERE expires_at < $1`, now.UnixNano()); err != nil {
		return "", session{}, fmt.Errorf("cannot purge sessions: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO http_sessions (id_hash, name, csrf, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)`, hashID(id), name, sess.csrf, now.UnixNano(), sess.expires.UnixNano()); err != nil {
		return "", session{}, fmt.Errorf("cannot store session: %w", err)
	}
	return id, sess, nil
}

// errNoSession is a session id that is unknown or expired.
var errNoSession = errors.New("no such session")

func (s *Store) session(ctx context.Context, id string) (session, error) {
	var sess session
	var exp int64
	err := s.db.QueryRowContext(ctx, `SELECT name, csrf, expires_at FROM http_sessions WHERE id_hash = $1`,
		hashID(id)).Scan(&sess.name, &sess.csrf, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return session{}, errNoSession
	}
	if err != nil {
		return session{}, fmt.Errorf("cannot read session: %w", err)
	}
	sess.expires = time.Unix(0, exp)
	if time.Now().After(sess.expires) {
		return session{}, errNoSession
	}
	return sess, nil
}

func (s *Store) endSession(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM http_sessions WHERE id_hash = $1`, hashID(id)); err != nil {
		return fmt.Errorf("cannot end session: %w", err)
	}
	return nil
}

// me is who the page is talking to.
type me struct {
	Name     string   `json:"name"`
	Role     string   `json:"role"`
	Grids    []string `json:"grids"`
	PII      bool     `json:"pii"`
	CSRF     string   `json:"csrf,omitempty"` // send as X-CSRF-Token on writes
	Session  bool     `json:"session"`
	Open     bool     `json:"open"` // no tokens or users configured (loopback only)
	TimeZone string   `json:"timezone"`
}

func (s *Server) meOf(p principal) me {
	m := me{Name: p.name, Role: p.role, Grids: p.grids, PII: p.pii, Open: s.auth.cfg.open(), TimeZone: s.cfg.TimeZone}
	if m.Grids == nil {
		m.Grids = []string{}
	}
	if p.sess != nil {
		m.CSRF, m.Session = p.sess.csrf, true
	}
	return m
}

// whoAmI answers GET /api/v1/me.
func (s *Server) whoAmI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, s.meOf(principalOf(r)))
}

// login answers POST /api/v1/login with {"name","password"}: a session
// cookie and the page's CSRF token. Only JSON is read, so a cross-site
// form cannot post a login.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.deps.Store == nil || len(s.auth.users) == 0 {
		writeError(w, http.StatusNotFound, "no users are configured: use a token")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "login takes application/json")
		return
	}
	var body struct{ Name, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "cannot read body: "+err.Error())
		return
	}
	now := time.Now()
	done, no := s.logins.admit(r.Context(), body.Name, s.clientAddr(r), now)
	if no != nil {
		loginChecks.WithLabelValues(no.result).Inc()
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(no.retry.Round(time.Second)/time.Second))))
		writeError(w, http.StatusTooManyRequests, no.msg)
		return
	}
	u, known := s.auth.users[body.Name]
	hash := dummyHash()
	if known {
		hash = u.PasswordHash.Reveal()
	}
	ok := checkPassword(hash, body.Password) && known
	done(ok)
	if !ok {
		loginChecks.WithLabelValues("wrong").Inc()
		s.deps.Store.Audit(r.Context(), AuditEntry{At: now, Name: body.Name, Action: AuditLoginFailed, Remote: r.RemoteAddr})
		writeError(w, http.StatusUnauthorized, "wrong name or password")
		return
	}
	loginChecks.WithLabelValues("ok").Inc()
	id, sess, err := s.deps.Store.newSession(r.Context(), u.Name, s.auth.cfg.SessionTTL)
	if err == nil {
		err = s.deps.Store.Audit(r.Context(), AuditEntry{At: now, Name: u.Name, Role: u.Role, Action: AuditLogin, Remote: r.RemoteAddr})
	}
	if err != nil {
		s.log.Error().Err(err).Msg("cannot log in")
		writeError(w, http.StatusServiceUnavailable, "cannot store the session")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: sess.expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureRequest(r)})
	writeJSON(w, 200, s.meOf(principal{name: u.Name, role: u.Role, grids: u.Grids, pii: u.PII, sess: &sess}))
}

// logout answers POST /api/v1/logout: the session ends on the server too.
// Ending a live session needs its CSRF token, as every session's write
// does, so another site cannot log a person out; a cookie of no session
// is just cleared.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && s.deps.Store != nil {
		sess, err := s.deps.Store.session(r.Context(), c.Value)
		switch {
		case err == nil && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(sess.csrf)) != 1:
			writeError(w, http.StatusForbidden, errBadCSRF.Error())
			return
		case err == nil:
			err = s.deps.Store.endSession(r.Context(), c.Value)
		case errors.Is(err, errNoSession):
			err = nil
		}
		if err != nil {
			s.log.Error().Err(err).Msg("cannot log out")
			writeError(w, http.StatusServiceUnavailable, "cannot end the session")
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureRequest(r)})
	w.WriteHeader(http.StatusNoContent)
}

// secureRequest reports whether r came over TLS, directly or through a
// proxy that says so: the cookie is then Secure.
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}
