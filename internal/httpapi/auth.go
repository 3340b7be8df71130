package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// principal is who made a request: a person logged in with a session, or a
// machine holding a token.
type principal struct {
	name  string
	role  string
	grids []string // managers only
	pii   bool     // may see phone numbers in full
	sess  *session // nil for tokens and the open API
}

type ctxKey struct{}

// canSeeGrid reports whether p may see grid's customers.
func (p principal) canSeeGrid(grid string) bool {
	return p.role != RoleManager || slices.Contains(p.grids, grid)
}

// errNoCredentials and errBadCSRF are why a request is refused.
var (
	errNoCredentials = errors.New("missing or unknown bearer token or session")
	errBadCSRF       = errors.New("missing or wrong X-CSRF-Token for a session's write")
)

// authenticator checks bearer tokens and session cookies. With neither
// tokens nor users configured every request is an admin's: Validate allows
// that only on a loopback listener.
type authenticator struct {
	cfg   AuthConfig
	users map[string]User
	store *Store // sessions; nil = logins are refused
}

func newAuthenticator(cfg AuthConfig, st *Store) authenticator {
	a := authenticator{cfg: cfg, users: map[string]User{}, store: st}
	for _, u := range cfg.Users {
		a.users[u.Name] = u
	}
	return a
}

func (a authenticator) principal(r *http.Request) (principal, error) {
	if a.cfg.open() {
		return principal{name: "local", role: RoleAdmin, pii: true}, nil
	}
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return principal{}, errNoCredentials
		}
		for _, t := range a.cfg.Tokens {
			if subtle.ConstantTimeCompare([]byte(tok), []byte(t.Token.Reveal())) == 1 {
				return principal{name: t.Name, role: t.Role, grids: t.Grids, pii: t.PII}, nil
			}
		}
		return principal{}, errNoCredentials
	}
	return a.sessionPrincipal(r)
}

// sessionPrincipal is the person whose session cookie r carries. A write
// must also carry the session's CSRF token: SameSite=Strict already keeps
// other sites' forms out, the token keeps out what slips past it.
func (a authenticator) sessionPrincipal(r *http.Request) (principal, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || a.store == nil {
		return principal{}, errNoCredentials
	}
	sess, err := a.store.session(r.Context(), c.Value)
	if err != nil {
		return principal{}, errNoCredentials
	}
	u, ok := a.users[sess.name]
	if !ok { // removed from the config since logging in
		return principal{}, errNoCredentials
	}
	if !safeMethod(r.Method) && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(sess.csrf)) != 1 {
		return principal{}, errBadCSRF
	}
	return principal{name: u.Name, role: u.Role, grids: u.Grids, pii: u.PII, sess: &sess}, nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// require wraps next so that only the given roles reach it.
func (a authenticator) require(next http.Handler, roles ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.principal(r)
		switch {
		case errors.Is(err, errBadCSRF):
			writeError(w, http.StatusForbidden, err.Error())
			return
		case err != nil:
			w.Header().Set("WWW-Authenticate", `Bearer realm="gridbell"`)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		if !slices.Contains(roles, p.role) {
			writeError(w, http.StatusForbidden, "role "+p.role+" may not do this")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	})
}

func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(ctxKey{}).(principal)
	return p
}
