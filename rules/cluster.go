package rules

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// Distributed mode (docs/deploy.md): every instance holds an Engine, but
// only the one holding the rules lease runs it (Run). The others keep it as
// a read-only copy of the store (Refresh), answer the API from it, and
// forward API writes through the meter topic (SetRemote) to whichever
// instance runs the rules. The running one commits, with each batch, the
// meter-topic offsets it consumed, under a fence that fails once another
// instance has taken the lease (SetFence): so input is applied once, and a
// former holder that wakes up late cannot write.

// Forwarder takes events to the instance running the rules (in distributed
// mode, a producer to the meter topic), returning once they are durable.
type Forwarder interface {
	Handle(ctx context.Context, evs []event.Event) error
}

// Fence is called inside every rules transaction that writes, before it
// commits. It must fail when this process no longer holds the right to
// write (another instance took the rules lease); offsets, when not nil, are
// the next meter-topic offset of each partition the batch consumed up to,
// to be written in the same transaction.
type Fence func(ctx context.Context, tx *sql.Tx, offsets map[int32]int64) error

// offsetEvery is how often consumed offsets are committed when the batches
// themselves write nothing (plain readings): a takeover replays at most
// about that much input, which changes nothing already applied.
const offsetEvery = time.Second

// commandWait is how long a forwarded API write waits to see its effect in
// this instance's copy before answering.
const commandWait = 10 * time.Second

// SetFence makes every commit call f (see Fence). Call before Run.
func (e *Engine) SetFence(f Fence) { e.fence = f }

// fencedOut stops the engine after the fence refused a commit: another
// instance took the rules lease and runs the rules from what the store
// holds, so this one must apply nothing more. Nothing is reloaded: Run
// returns the error and every request after it gets it, until Demote makes
// the engine a copy again. Writer only.
func (e *Engine) fencedOut(err error, events int) {
	if e.fenced.CompareAndSwap(nil, &err) {
		e.log.Error().Err(err).Int("events", events).
			Msg("rules commit fenced: another instance runs the rules; this one stops applying input")
	}
}

// Demote makes an engine whose Run has returned because another instance
// took the rules over (its commits fenced, or its lease lost: a process
// frozen past its lease, then resumed) a copy again, one that Run may run
// once more when this instance takes the lease again. Memory may hold input
// the engine applied and never committed, so it loads the whole state from
// the store; the copy's refreshes go on from there.
func (e *Engine) Demote(ctx context.Context) error {
	if e.running.Load() {
		return errors.New("rules engine: cannot demote an engine that runs")
	}
	e.fence = nil
	e.fenced.Store(nil)
	e.reloading.Store(false)
	e.stopped.Store(new(make(chan struct{})))
	if err := e.load(ctx); err != nil {
		return fmt.Errorf("cannot load the rules' state as a copy again: %w", err)
	}
	return nil
}

// fencedErr returns the error that stopped the engine's commits (fencedOut),
// or nil.
func (e *Engine) fencedErr() error {
	if p := e.fenced.Load(); p != nil {
		return *p
	}
	return nil
}

// SetRemote makes Confirm, ConfirmWithReason and ReportStillOut forward
// their write through f while this Engine is not running (Run): another
// instance applies it. Call before the Engine is shared.
func (e *Engine) SetRemote(f Forwarder) { e.remote = f }

// HandleAt is Handle for input consumed from the meter topic: offsets holds,
// for each partition, the offset after the last record evs came from. They
// are committed with the effects (see Fence), at the latest offsetEvery
// later.
func (e *Engine) HandleAt(ctx context.Context, evs []event.Event, offsets map[int32]int64) error {
	return e.call(ctx, &request{evs: evs, offsets: offsets})
}

// forwarding reports whether API writes go to another instance.
func (e *Engine) forwarding() bool { return e.remote != nil && !e.running.Load() }

// forward sends c to the instance running the rules, then waits (at most
// commandWait) until done reports its effect in this instance's copy. The
// write is durable once forward returns nil, seen or not.
func (e *Engine) forward(ctx context.Context, c *event.Command, done func() bool) error {
	err := e.remote.Handle(ctx, []event.Event{{Command: c, Source: "api", Received: time.Now()}})
	if err != nil {
		return fmt.Errorf("cannot forward %s to the rules: %w", c.Kind, err)
	}
	commandsForwarded.WithLabelValues(c.Kind).Inc()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(commandWait)
	for !done() {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			e.log.Warn().Str("command", c.Kind).Str("outage", c.Outage).Dur("waited", commandWait).
				Msg("forwarded write not yet visible here; it is queued in the meter topic")
			return nil
		case <-t.C:
		}
	}
	return nil
}

// confirmRemote checks a confirmation against this instance's copy and
// forwards it. The instance running the rules checks it again when it
// applies it.
func (e *Engine) confirmRemote(ctx context.Context, id, by, reason string) error {
	e.mu.RLock()
	o, ok := e.outageIdx[id]
	var dark int
	var rid string
	if ok {
		r := e.outages[o]
		rid, dark = r.ID, e.view(r, nil).Counts.Dark
	}
	e.mu.RUnlock()
	if !ok {
		return fmt.Errorf("cannot confirm outage %s: %w", id, ErrNotFound)
	}
	if dark > 0 && reason == "" {
		return &StillDarkError{Outage: rid, Dark: dark}
	}
	return e.forward(ctx, &event.Command{Kind: event.CommandConfirm, Outage: id, By: by, Reason: reason}, func() bool {
		v, ok := e.Outage(id)
		return ok && v.ConfirmedBy != ""
	})
}

// applyCommand applies a forwarded API write. Lock: e.mu held.
func (e *Engine) applyCommand(c *event.Command) {
	switch c.Kind {
	case event.CommandConfirm:
		o, ok := e.outageIdx[c.Outage]
		if !ok {
			e.log.Warn().Str("outage", c.Outage).Msg("forwarded confirmation of an unknown outage ignored")
			commandsRefused.WithLabelValues(c.Kind).Inc()
			return
		}
		r := e.outages[o]
		if r.ConfirmedBy != "" {
			return // already confirmed: a replay
		}
		if dark := e.view(r, nil).Counts.Dark; dark > 0 && c.Reason == "" {
			e.log.Warn().Str("outage", r.ID).Int("dark", dark).Str("by", c.By).
				Msg("forwarded confirmation refused: customers went dark again before it was applied")
			commandsRefused.WithLabelValues(c.Kind).Inc()
			return
		}
		r.ConfirmReason = c.Reason
		_ = e.confirm(r, c.By)
	case event.CommandStillOut:
		accounts := c.Accounts
		if len(accounts) == 0 {
			accounts = e.dir.AccountsByPhone(c.Phone)
		}
		for _, a := range accounts {
			e.reportOut(a)
		}
	default:
		e.log.Warn().Str("command", c.Kind).Msg("unknown forwarded command ignored")
		commandsRefused.WithLabelValues(c.Kind).Inc()
	}
}

// noteOffsets keeps the highest next offset per partition of a batch's
// input until a commit writes them. Writer only.
func (e *Engine) noteOffsets(offsets map[int32]int64) {
	if len(offsets) == 0 {
		return
	}
	if e.offsets == nil {
		e.offsets = map[int32]int64{}
	}
	for p, o := range offsets {
		if o > e.offsets[p] {
			e.offsets[p] = o
		}
	}
}

// dueOffsets returns the offsets a commit must write: all pending ones
// when the batch writes anyway, or when they have waited offsetEvery.
func (e *Engine) dueOffsets(quiet bool) map[int32]int64 {
	if e.fence == nil || len(e.offsets) == 0 || (quiet && time.Since(e.offsetsAt) < offsetEvery) {
		return nil
	}
	return e.offsets
}

// offsetsDue reports whether the offsets pending have waited offsetEvery:
// the next commit writes them even if the batch writes nothing else.
func (e *Engine) offsetsDue() bool {
	return e.fence != nil && len(e.offsets) > 0 && time.Since(e.offsetsAt) >= offsetEvery
}

func init() { // every series exists from the start
	for _, k := range []string{event.CommandConfirm, event.CommandStillOut} {
		commandsForwarded.WithLabelValues(k)
		commandsRefused.WithLabelValues(k)
	}
}
