package rules

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/internal/store"
)

// ErrReloading is returned for input offered while the rules rebuild their
// state from the store after a failed commit: nothing of it was applied.
// The input is to be offered again later (MQTT and Kafka input stays
// unacknowledged, so the broker delivers it again).
var ErrReloading = errors.New("rules engine is reloading its state from the store")

// Reload backoff: the first retry is quick (a PostgreSQL fast restart takes
// well under a second), later ones are spaced up to reloadMax, which also
// bounds how long the rules lag behind a store that came back.
const (
	reloadFirst = 100 * time.Millisecond
	reloadMax   = 5 * time.Second
)

// health is what the writer learnt of the store; Ready reads it from other
// goroutines.
type health struct {
	mu        sync.Mutex // guards commitErr, loadErr
	commitErr error      // the last commit's failure; nil once one succeeds
	loadErr   error      // the last reload's failure while reloading

	// writer only
	down     time.Time // when the current failure began
	tries    int
	wait     time.Duration
	nextLoad time.Time
	thr      logging.Throttle

	commitFails metrics.Counter
	retries     metrics.Counter
	retrying    metrics.Gauge
	reloads     metrics.Counter
	reloadFails metrics.Counter
	gauge       metrics.Gauge
}

func (h *health) init() {
	h.thr = logging.Throttle{Period: 10 * time.Second}
	h.commitFails = metrics.Default.Counter("gridbell_rules_commit_failures_total", "rules batches whose commit failed (their input was not acknowledged)")
	h.retries = metrics.Default.Counter("gridbell_rules_commit_retries_total", "retries of a rules batch's commit that the store refused to write while it still reads (a full disk, a lock timeout): the same commit, with backoff")
	h.retrying = metrics.Default.Gauge("gridbell_rules_commit_retrying", "1 while the rules hold a batch the store refused to write and retry its commit")
	h.retrying.Set(0)
	h.reloads = metrics.Default.Counter("gridbell_rules_reloads_total", "rules state reloads from the store after a failed commit")
	h.reloadFails = metrics.Default.Counter("gridbell_rules_reload_failures_total", "failed attempts to reload the rules state (retried with backoff)")
	h.gauge = metrics.Default.Gauge("gridbell_rules_reloading", "1 while the rules apply no input until their state is reloaded from the store")
	h.gauge.Set(0)
}

func (h *health) set(commitErr, loadErr error) {
	h.mu.Lock()
	h.commitErr, h.loadErr = commitErr, loadErr
	h.mu.Unlock()
}

// committed notes a successful commit. Writer only.
func (h *health) committed() {
	h.mu.Lock()
	failing := h.commitErr != nil
	h.mu.Unlock()
	if failing {
		h.set(nil, nil)
	}
}

// Ready reports nil while the rules commit and apply input, and otherwise
// why not: reloading their state, or the store cannot commit.
func (e *Engine) Ready() error {
	h := &e.health
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case e.reloading.Load() && h.loadErr != nil:
		return fmt.Errorf("rules engine reloading its state: %v", h.loadErr)
	case e.reloading.Load():
		return fmt.Errorf("rules engine reloading its state after a failed commit: %v", h.commitErr)
	case h.commitErr != nil:
		return fmt.Errorf("store cannot commit: %v", h.commitErr)
	}
	return nil
}

// commitFailed puts the engine in reloading: memory holds the batch's
// effects, which the store refused. It returns the error the batch's
// callers get: Temporary unless the store refused the data itself
// (store.DataError), so ingest retries a store that is down or full for as
// long as it takes and counts only data refusals towards a poison message.
// Writer only.
func (e *Engine) commitFailed(err error, events int) error {
	h := &e.health
	h.commitFails.Inc()
	h.set(err, nil)
	if !e.reloading.Swap(true) {
		h.down, h.tries, h.wait, h.nextLoad = time.Now(), 0, 0, time.Time{}
		h.gauge.Set(1)
	}
	if ok, n := h.thr.Allow(); ok {
		e.log.Error().Err(err).Int("events", events).Int("suppressed", n).
			Msg("cannot commit rules batch; input waits unacknowledged while the state is reloaded from the store")
	}
	e.reload()
	if store.DataError(err) {
		return err
	}
	return &storeError{err}
}

// storeError is a commit failure that says nothing against the input: the
// store is unreachable, full or restarting. It is Temporary.
type storeError struct{ err error }

func (e *storeError) Error() string   { return "cannot commit rules batch: " + e.err.Error() }
func (e *storeError) Unwrap() error   { return e.err }
func (e *storeError) Temporary() bool { return true }

// reload rebuilds the state from the store, at most once per backoff step,
// and reports whether the engine may apply input again. Writer only.
func (e *Engine) reload() bool {
	h := &e.health
	now := time.Now()
	if now.Before(h.nextLoad) {
		return false
	}
	h.tries++
	err := e.load(context.Background())
	if err == nil {
		e.reloading.Store(false)
		// Whether the store writes again is the next commit's to say (and
		// the app's store probe's): a batch of plain readings commits nothing.
		h.set(nil, nil)
		h.reloads.Inc()
		h.gauge.Set(0)
		e.log.Warn().Int("attempts", h.tries).Dur("down", time.Since(h.down)).Msg("rules state reloaded from the store; applying input again")
		return true
	}
	h.reloadFails.Inc()
	h.wait = min(max(2*h.wait, reloadFirst), reloadMax)
	h.nextLoad = now.Add(h.wait)
	h.mu.Lock()
	h.loadErr = err
	h.mu.Unlock()
	if ok, n := h.thr.Allow(); ok {
		e.log.Error().Err(err).Int("attempts", h.tries).Int("suppressed", n).Dur("retry_in", h.wait).
			Msg("cannot reload rules state; input waits unacknowledged")
	}
	return false
}

// Retrying a refused commit: the first retry is quick, later ones are
// spaced up to retryMax, which bounds how long the rules lag behind a disk
// that has room again.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 2 * time.Second
)

// retryCommit commits w and intents again, with backoff, for as long as
// the store refuses to write them while it still reads (store.WriteRefused:
// a full disk, a lock timeout) and ctx (Run's) lasts. Memory holds
// exactly what the refused commit was to write, so the same commit is
// offered again: no reload, and the batch's callers simply wait (their
// input stays unacknowledged meanwhile, and later input queues behind
// them). It returns nil once committed, else the last error, for
// commitFailed. Writer only.
func (e *Engine) retryCommit(ctx context.Context, w *writeSet, intents []event.Intent, err error, events int) error {
	h := &e.health
	h.set(err, nil)
	h.retrying.Set(1)
	defer h.retrying.Set(0)
	down, tries, wait := time.Now(), 1, retryFirst
	for store.WriteRefused(err) {
		if ok, n := h.thr.Allow(); ok {
			e.log.Error().Err(err).Int("events", events).Int("intents", len(intents)).Int("attempts", tries).
				Int("suppressed", n).Dur("retry_in", wait).
				Msg("the store refuses to write the rules batch (full disk or lock timeout); retrying the same commit, input waits unacknowledged")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		tries++
		h.retries.Inc()
		if err = e.commit(context.Background(), w, intents); err == nil {
			e.log.Warn().Int("attempts", tries).Dur("down", time.Since(down)).
				Msg("rules batch committed after the store refused it; applying input again")
			return nil
		}
		h.set(err, nil)
		wait = min(2*wait, retryMax)
	}
	return err
}

// refuse answers a batch taken while reloading: nothing was applied.
func (e *Engine) refuse(batch []*request) {
	h := &e.health
	h.mu.Lock()
	cause := h.loadErr
	if cause == nil {
		cause = h.commitErr
	}
	h.mu.Unlock()
	for _, r := range batch {
		r.done <- &reloadingError{cause: cause}
	}
}

// reloadingError is ErrReloading with its cause. It is Temporary: the
// input is not at fault, and ingest retries it for as long as it takes.
type reloadingError struct{ cause error }

func (e *reloadingError) Error() string   { return fmt.Sprintf("%v: %v", ErrReloading, e.cause) }
func (e *reloadingError) Unwrap() []error { return []error{ErrReloading, e.cause} }
func (e *reloadingError) Temporary() bool { return true }
