package httpapi

import (
	_ "embed"
	"net/http"
)

//go:embed page.html
var page []byte

// servePage serves the operators' page. It holds no data: the page calls the
// API with the token the user types (kept in the browser's session storage).
func servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'")
	w.Write(page)
}
