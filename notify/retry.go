package notify

import (
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/metrics"
)

// Retry classes of a send that did not go through, each counted
// (gridbell_sms_retries_total{class}) and logged at most once per
// retryLogEvery with how many it held back.
const (
	retryThrottle  = "throttled"       // 429, or a 5xx with Retry-After: everything pauses
	retryTransient = "transient"       // no connection, a 5xx, bad credentials: backoff
	retryUnknown   = "unknown_outcome" // the request went out, no answer came: look up, then resend
)

const retryLogEvery = 10 * time.Second

// retryLog counts and logs retries by class.
type retryLog struct {
	log     zerolog.Logger
	classes map[string]*retryClass
}

type retryClass struct {
	thr logging.Throttle
	n   metrics.Counter
}

func newRetryLog(log zerolog.Logger) *retryLog {
	l := &retryLog{log: log, classes: map[string]*retryClass{}}
	for _, c := range []string{retryThrottle, retryTransient, retryUnknown} {
		l.classes[c] = &retryClass{thr: logging.Throttle{Period: retryLogEvery},
			n: retriesVec.WithLabelValues(c)}
	}
	return l
}

// note counts one retry of class and logs it unless throttled.
func (l *retryLog) note(class string, r outcome, wait time.Duration) {
	c := l.classes[class]
	c.n.Inc()
	ok, held := c.thr.Allow()
	if !ok {
		return
	}
	ev := l.log.Warn()
	if class == retryUnknown {
		ev = l.log.Error()
	}
	ev.Err(r.err).Str("class", class).Str("sms", r.ID).Str("kind", string(r.Kind)).
		Int("attempts", r.attempts+1).Dur("retry_in", wait).Int("held_back", held).Msg("sms send to retry")
}

func unknownOutcome(err error) bool {
	var u *UnknownOutcomeError
	return errors.As(err, &u)
}
