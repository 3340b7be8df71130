package ingest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/logging"
)

// ReasonUnstorable marks a message whose events the handler refused
// poisonTries times while it was up (not merely unavailable): its effect
// can never be stored, and it must not block the input behind it.
const ReasonUnstorable = "unstorable"

// poisonTries bounds how often events the handler refuses for a reason of
// their own are offered before their message goes to the dead letters.
const poisonTries = 5

// temporary reports whether err says the handler is unavailable for a
// while (the rules reloading from a store that is down), not that it
// refuses these events: such refusals are retried for as long as it takes.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// offer hands evs to h until h takes them, ctx ends (its error is
// returned) or h refused them poisonTries times while available (that
// refusal is returned). It waits an exponential, jittered backoff between
// tries and logs failures, throttled by thr.
func offer(ctx context.Context, log zerolog.Logger, thr *logging.Throttle, what string, h Handler, evs []event.Event) error {
	wait, refused := retryFirst, 0
	for {
		err := h.Handle(ctx, evs)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !temporary(err) {
			if refused++; refused >= poisonTries {
				return err
			}
		}
		if ok, n := thr.Allow(); ok {
			log.Error().Err(err).Int("suppressed", n).Int("refused", refused).Dur("retry_in", wait).Msg("cannot " + what + ", retrying")
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, retryMax)
	}
}

// unstorable is the dead-letter error of a message the handler refused.
func unstorable(where string, raw []byte, err error) error {
	d := fmt.Sprintf("%s refused %d times: %v", where, poisonTries, err)
	if len(d) > maxDetail {
		d = strings.ToValidUTF8(d[:maxDetail], "")
	}
	return &DecodeError{Rejections: []Rejection{{Index: -1, Reason: ReasonUnstorable, Detail: d, Raw: raw}}}
}
