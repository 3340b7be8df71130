package httpapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"gopkg.in/yaml.v3"
)

// openapiYAML describes the HTTP API (OpenAPI 3). It is written as YAML
// for people and served as JSON; TestOpenAPIMatchesRoutes keeps it and the
// routes in step.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the API description as JSON.
var OpenAPI = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("cannot read openapi.yaml: %w", err)
	}
	return json.Marshal(doc)
})

// serveOpenAPI answers GET /api/v1/openapi.json. It needs no token: it
// describes the interface and holds no data.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	b, err := OpenAPI()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// routeMux is a ServeMux that remembers its patterns, so that Routes can
// list them.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// HandleFunc registers f for pattern.
func (m *routeMux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Routes lists the "METHOD /path" patterns the server answers with its
// deps: every one of them is in the OpenAPI description.
func (s *Server) Routes() []string { return s.mux().patterns }
