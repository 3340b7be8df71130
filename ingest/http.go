package ingest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/event"
)

// HTTP takes OMS and billing events posted by sites without Kafka
// (docs/interfaces.md §2). Authentication is the caller's job.
//
// Answers: 202 {"accepted":n} once every event is stored; 400
// {"accepted":n,"rejected":[{"index","reason","detail"}],"rejected_count":m}
// when some elements were rejected (the first 100 listed; the valid ones are
// stored all the same, and resending the
// whole array is harmless); 413 for a body over the size limit; 503 when the
// store could not take the events (retry later).
type HTTP struct {
	lim      Limits
	h        Handler
	log      zerolog.Logger
	rejects  rejecter
	accepted acceptCounts
}

// NewHTTP returns the HTTP input.
func NewHTTP(lim Limits, h Handler, dl *DeadLetters, log zerolog.Logger) *HTTP {
	lim.Defaults()
	return &HTTP{lim: lim, h: h, log: log,
		rejects: rejecter{dl: dl, source: SourceHTTP}, accepted: newAcceptCounts(SourceHTTP)}
}

// OMS handles POST /api/v1/oms/events.
func (x *HTTP) OMS() http.Handler { return x.endpoint(TopicHTTPOMS, DecodeOMS) }

// Billing handles POST /api/v1/billing/events.
func (x *HTTP) Billing() http.Handler { return x.endpoint(TopicHTTPBilling, DecodeBilling) }

type decodeFunc func(payload []byte, now time.Time, lim Limits) ([]event.Event, error)

type httpAnswer struct {
	Accepted int         `json:"accepted"`
	Rejected []Rejection `json:"rejected,omitempty"` // the first maxAnswerRejections
	// RejectedCount is how many elements were rejected in all.
	RejectedCount int    `json:"rejected_count,omitempty"`
	Error         string `json:"error,omitempty"`
}

// maxAnswerRejections bounds the rejections listed in an answer: 20,000
// bad elements in a 40 KB body must not make a 2 MB answer. All of them
// are in the dead letter.
const maxAnswerRejections = 100

func (x *HTTP) endpoint(topic string, decode decodeFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			answer(w, http.StatusMethodNotAllowed, httpAnswer{Error: "use POST"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(x.lim.MaxPayload)+1))
		var tooBig *http.MaxBytesError
		if err != nil && !errors.As(err, &tooBig) {
			answer(w, http.StatusBadRequest, httpAnswer{Error: "cannot read body: " + err.Error()})
			return
		}
		evs, derr := decode(body, time.Now(), x.lim)
		for i := range evs {
			evs[i].Source = SourceHTTP
		}
		rejs := Rejections(derr)
		a := httpAnswer{Accepted: len(evs), Rejected: rejs[:min(len(rejs), maxAnswerRejections)], RejectedCount: len(rejs)}
		if derr != nil {
			if err := x.rejects.keep(r.Context(), topic, body, derr); err != nil {
				x.log.Error().Err(err).Str("path", topic).Msg("cannot keep rejected http events")
			}
		}
		if len(evs) > 0 {
			if err := x.h.Handle(r.Context(), evs); err != nil {
				x.log.Error().Err(err).Str("path", topic).Int("events", len(evs)).Msg("cannot store http events")
				w.Header().Set("Retry-After", "1")
				answer(w, http.StatusServiceUnavailable, httpAnswer{Error: "cannot store events now; retry", Rejected: a.Rejected})
				return
			}
			x.accepted.add(evs)
		}
		switch {
		case len(a.Rejected) == 1 && a.Rejected[0].Reason == ReasonTooLarge: // also when MaxBytesReader stopped the read
			answer(w, http.StatusRequestEntityTooLarge, a)
		case derr != nil && len(evs) > 0:
			// Some elements were taken, some refused: not a failed request
			// (a client retrying it on a 400 would resend the good ones),
			// and the answer names each refused element.
			answer(w, http.StatusMultiStatus, a)
		case derr != nil:
			answer(w, http.StatusBadRequest, a)
		default:
			answer(w, http.StatusAccepted, a)
		}
	})
}

func answer(w http.ResponseWriter, code int, a httpAnswer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(a)
}
