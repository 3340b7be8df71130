package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gridbell/gridbell/ingest"
)

// DeadLetters is what the API needs of ingest's dead-letter store.
type DeadLetters interface {
	List(ctx context.Context, limit int) ([]ingest.DeadLetter, error)
	Replay(ctx context.Context, ids []int64, h ingest.Handler) (int, error)
}

// maxReplay bounds one replay request.
const maxReplay = 100000

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive number")
			return
		}
		limit = min(n, maxReplay)
	}
	items, err := s.deps.DeadLetters.List(r.Context(), limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"dead_letters": items})
}

// replayDeadLetters hands dead letters back to the rules through the running
// service, the only writer of the rules' state. No ids = all of them.
func (s *Server) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	var body struct {
		IDs []int64 `json:"ids"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "cannot read body: "+err.Error())
		return
	}
	if len(body.IDs) == 0 {
		items, err := s.deps.DeadLetters.List(r.Context(), maxReplay)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		for _, it := range items {
			body.IDs = append(body.IDs, it.ID)
		}
	}
	n, err := s.deps.DeadLetters.Replay(r.Context(), body.IDs, s.deps.Handler)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, 200, map[string]int{"requested": len(body.IDs), "replayed": n})
}
