package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the operators' page: HTML, its script and its style sheet,
// served from the binary. Nothing is fetched from anywhere else, and the
// page runs under the Content-Security-Policy of every answer (scripts
// from gridbell's own files only, nothing inline).
//
//go:embed web
var web embed.FS

// pageRoutes serves the page at / and its two files under /static/.
func pageRoutes(mux *routeMux) {
	files, _ := fs.Sub(web, "web") // the directory is embedded: cannot fail
	index, _ := fs.ReadFile(files, "index.html")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(index)
	})
	static := http.StripPrefix("/static/", http.FileServerFS(files))
	mux.Handle("GET /static/app.js", static)
	mux.Handle("GET /static/app.css", static)
	// The monthly reliability view (customer care): its own page and script.
	reliability, _ := fs.ReadFile(files, "reliability.html")
	mux.HandleFunc("GET /reliability", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(reliability)
	})
	mux.Handle("GET /static/reliability.js", static)
}
