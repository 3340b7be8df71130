package ingest

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/logging"
)

// Backoff bounds for retrying a store that is briefly unavailable.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 5 * time.Second
)

// retry calls fn until it returns nil or ctx ends, waiting an exponential,
// jittered backoff between tries. Failures are logged here, throttled by thr:
// this loop owns them. The error returned is ctx's, or nil.
func retry(ctx context.Context, log zerolog.Logger, thr *logging.Throttle, what string, fn func() error) error {
	wait := retryFirst
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ok, n := thr.Allow(); ok {
			log.Error().Err(err).Int("suppressed", n).Dur("retry_in", wait).Msg("cannot " + what + ", retrying")
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

// stopGrace is how long an input, told to stop, still has to finish the
// messages in hand (store them, then ack or commit), so a clean stop
// causes no redeliveries.
const stopGrace = 5 * time.Second

// graceful returns a context for handling messages: it outlives ctx by
// stopGrace, and stop ends it at once.
func graceful(ctx context.Context) (hctx context.Context, stop context.CancelFunc) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	after := context.AfterFunc(ctx, func() { time.AfterFunc(stopGrace, cancel) })
	return hctx, func() { after(); cancel() }
}
