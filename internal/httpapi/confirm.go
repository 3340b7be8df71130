package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/gridbell/gridbell/rules"
)

// confirm answers POST /api/v1/outages/{id}/confirm. The confirmation is
// recorded under the authenticated name, never a name the client sends.
// While customers are still dark it answers 409 unless the body gives a
// reason (docs/interfaces.md §6); the page shows that answer as its warning.
func (s *Server) confirm(w http.ResponseWriter, r *http.Request) {
	o, ok := s.outage(w, r)
	if !ok {
		return
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "cannot read body: "+err.Error())
			return
		}
	}
	body.Reason = strings.TrimSpace(body.Reason)
	p := principalOf(r)
	err := s.deps.Outages.ConfirmWithReason(r.Context(), o.ID, p.name, body.Reason)
	var dark *rules.StillDarkError
	switch {
	case errors.As(err, &dark):
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "dark": dark.Dark, "needs_reason": true})
		return
	case errors.Is(err, rules.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such outage: "+o.ID)
		return
	case err != nil:
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	detail := "no meters dark"
	if body.Reason != "" {
		detail = "reason: " + body.Reason
	}
	if !s.audit(w, r, AuditConfirm, o.ID, detail) {
		return
	}
	o, _ = s.deps.Outages.OutageIn(o.ID, principalOf(r).scope())
	writeJSON(w, 200, s.withCounts(r.Context(), o, principalOf(r)))
}

// outageList is OutagesIn(status, grids), where status "attention" lists the
// outages confirmed while customers were dark that still have some.
func (s *Server) outageList(status string, grids []string) []rules.Outage {
	if status != "attention" {
		return s.deps.Outages.OutagesIn(status, grids)
	}
	out := []rules.Outage{}
	for _, o := range s.deps.Outages.OutagesIn("", grids) {
		if o.NeedsAttention {
			out = append(out, o)
		}
	}
	return out
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// csvDisposition names a list's file after its outage: prefix-id.csv.
func csvDisposition(prefix, id string) string {
	name := prefix + "-" + id + ".csv"
	ascii := prefix + "-" + unsafeFileChars.ReplaceAllString(id, "_") + ".csv"
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, ascii, url.PathEscape(name))
}
