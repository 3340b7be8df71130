package httpapi

import (
	"net/http"
	"net/netip"
	"slices"
	"time"
)

// ContentSecurityPolicy is sent with every answer: scripts only from
// gridbell's own files (no inline script, no eval), no plugins, no <base>
// rewriting, and no framing by another site. Inline styles stay allowed:
// they cannot run code.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"frame-ancestors 'none'; form-action 'self'"

// forwardingHeaders are what a reverse proxy says about the client. They
// are believed only from http.trusted_proxies.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-Ip"}

// guard wraps every route: it removes forwarding headers that do not come
// from a trusted proxy, sets the security headers of every answer (a
// handler may override them), and closes the connection after an error
// answer to a request with a body, so a refused client's body is never
// waited for.
func guard(proxies []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !trusted(proxies, r) {
			for _, h := range forwardingHeaders {
				r.Header.Del(h)
			}
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("Cache-Control", "no-store") // customer data must not stay in caches; the page is small
		if r.ContentLength != 0 {
			w = &refusalWriter{ResponseWriter: w}
		}
		next.ServeHTTP(w, r)
	})
}

// trusted reports whether r comes straight from a trusted proxy.
func trusted(proxies []netip.Prefix, r *http.Request) bool {
	if len(proxies) == 0 {
		return false
	}
	a, ok := remoteAddr(r)
	return ok && slices.ContainsFunc(proxies, func(p netip.Prefix) bool { return p.Contains(a) })
}

// refusalWriter marks an error answer "Connection: close" and ends the
// reading of its body at once. net/http would otherwise read up to 256 KiB
// of the unread body, before answering and again when the request ends, for
// as long as the client cares to trickle it (up to read_timeout).
type refusalWriter struct {
	http.ResponseWriter
}

func (w *refusalWriter) WriteHeader(code int) {
	if code >= 400 {
		w.Header().Set("Connection", "close")
		// The body is not wanted: a read from now on fails at once.
		http.NewResponseController(w.ResponseWriter).SetReadDeadline(time.Now())
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *refusalWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes streaming through.
func (w *refusalWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
