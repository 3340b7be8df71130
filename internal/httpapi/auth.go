package httpapi

import (
	"context"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// principal is who made a request.
type principal struct {
	role  string
	grids []string // managers only
}

type ctxKey struct{}

// canSeeGrid reports whether p may see grid's customers.
func (p principal) canSeeGrid(grid string) bool {
	return p.role != RoleManager || slices.Contains(p.grids, grid)
}

// authenticator checks bearer tokens. With no tokens configured every
// request is an admin's: Validate allows that only on a loopback listener.
type authenticator struct {
	tokens []Token
}

func (a authenticator) principal(r *http.Request) (principal, bool) {
	if len(a.tokens) == 0 {
		return principal{role: RoleAdmin}, true
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return principal{}, false
	}
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(t.Token.Reveal())) == 1 {
			return principal{role: t.Role, grids: t.Grids}, true
		}
	}
	return principal{}, false
}

// require wraps next so that only the given roles reach it.
func (a authenticator) require(next http.Handler, roles ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.principal(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gridbell"`)
			writeError(w, http.StatusUnauthorized, "missing or unknown bearer token")
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
