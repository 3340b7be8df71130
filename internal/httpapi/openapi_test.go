package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/secret"
)

// everything stands in for every part the server can be given; its
// methods are never called here (the embedded interfaces are nil).
type everything struct {
	outages
	deliveries
	quality
	importer
	deadLetters
	handler
	directory
	history
	overview
	careAnswers
}

// Local names, so that no embedded field shares a name with a method.
type (
	outages     interface{ httpapi.Outages }
	deliveries  interface{ httpapi.Deliveries }
	quality     interface{ httpapi.Quality }
	importer    interface{ httpapi.ContactsImporter }
	deadLetters interface{ httpapi.DeadLetters }
	handler     interface{ ingest.Handler }
	directory   interface { // Account comes with quality
		AccountsByPhone(e164 string) []string
		Grid(g string) (contacts.GridInfo, bool)
	}
	history     interface{ httpapi.History }
	overview    interface{ httpapi.Overview }
	careAnswers interface{ httpapi.Care }
)

// fullDeps gives the server every part, so that Routes lists every route
// it can serve. A new kind of part must be added to everything.
func fullDeps(t *testing.T) httpapi.Deps {
	var d httpapi.Deps
	v := reflect.ValueOf(&d).Elem()
	stub := reflect.ValueOf(everything{})
	handler := reflect.TypeFor[http.Handler]()
	for i := range v.NumField() {
		f, ft := v.Field(i), v.Type().Field(i)
		switch {
		case ft.Type == handler:
			f.Set(reflect.ValueOf(http.NotFoundHandler()))
		case ft.Type.Kind() == reflect.Interface && stub.Type().Implements(ft.Type):
			f.Set(stub)
		case ft.Type.Kind() == reflect.Interface:
			t.Fatalf("Deps.%s (%s): add it to the test's everything type so that its routes are checked", ft.Name, ft.Type)
		case ft.Type.Kind() == reflect.Func:
			f.Set(reflect.MakeFunc(ft.Type, func([]reflect.Value) []reflect.Value {
				out := make([]reflect.Value, ft.Type.NumOut())
				for j := range out {
					out[j] = reflect.Zero(ft.Type.Out(j))
				}
				return out
			}))
		case ft.Type.Kind() == reflect.Pointer:
			f.Set(reflect.New(ft.Type.Elem()))
		case ft.Type.Kind() == reflect.String:
			f.SetString(t.TempDir())
		}
	}
	return d
}

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	b, err := httpapi.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatalf("openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI 3: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes: every route the server registers is described
// in internal/httpapi/openapi.yaml with its method, and every operation
// described there is served. A new route fails here until it is described.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	srv := httpapi.New(httpapi.Config{Listen: "127.0.0.1:0"}, httpapi.AuthConfig{}, fullDeps(t), zerolog.Nop())
	served := map[string]bool{}
	for _, p := range srv.Routes() {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("route %q has no method: every route names one", p)
			continue
		}
		path = strings.TrimSuffix(path, "{$}")
		served[method+" "+path] = true
		item := doc.Paths.Find(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("route %s %s is not in internal/httpapi/openapi.yaml: describe it there", method, path)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !served[method+" "+path] {
				t.Errorf("openapi.yaml describes %s %s, which the server does not serve", method, path)
			}
		}
	}
	if len(served) < 20 {
		t.Errorf("only %d routes listed: %v", len(served), slices.Sorted(func(yield func(string) bool) {
			for k := range served {
				if !yield(k) {
					return
				}
			}
		}))
	}
}

// TestOpenAPIServed: the description is served as JSON without a token,
// also when tokens are configured.
func TestOpenAPIServed(t *testing.T) {
	auth := httpapi.AuthConfig{Tokens: []httpapi.Token{{Name: "ops", Token: secret.String("ops-token-0123456789"), Role: httpapi.RoleAdmin}}}
	ts := httptest.NewServer(httpapi.New(httpapi.Config{Listen: "127.0.0.1:0"}, auth, httpapi.Deps{}, zerolog.Nop()).Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/v1/openapi.json = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil || doc.Paths.Find("/api/v1/outages/{id}") == nil {
		t.Errorf("served description does not load or lacks /api/v1/outages/{id}: %v", err)
	}
	// A data route still needs the token.
	if resp, err := http.Get(ts.URL + "/api/v1/outages"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/outages without a token = %v %v, want 401", resp.StatusCode, err)
	}
}
