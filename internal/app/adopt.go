package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/cluster"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/store"
)

// A dead instance's MQTT share. The broker gives each member of a $share
// group a share of the messages, and keeps giving a disconnected member
// with a persistent session its share, queued, until it returns: an
// instance that dies and stays dead would keep its share of every meter's
// events. So every instance looks, every adoptEvery, for instances whose
// instance lease has lapsed and whose session is recorded
// (cluster.StrandedSessions); one of them (under the mqtt-adopt:<name>
// lease) adopts the session: it connects under the dead instance's client
// id, takes the messages queued there through its own input, until none has
// come for adoptQuiet, leaves the shared subscription, and discards the
// session (a clean-session connect), so the broker queues nothing more for
// it. A dead instance's share is carried within its lease (15 s) plus
// adoptEvery plus the drain. An instance that stops gracefully leaves the
// group itself and forgets its record.
const (
	adoptEvery    = 5 * time.Second
	adoptQuiet    = 3 * time.Second
	adoptMaxDrain = 5 * time.Minute
)

// registerSession records this instance's MQTT session for the others to
// adopt should it die, and forgets it on a graceful stop.
func (a *App) registerSession(ctx context.Context, cfg ingest.MQTTConfig, sink *ingest.InfluxSink) error {
	s := cluster.Session{Instance: a.cfg.Cluster.Instance, ClientID: cfg.ClientID}
	if err := cluster.RegisterSession(ctx, a.DB, s.Instance, s.ClientID); err != nil {
		return err
	}
	a.closers = append(a.closers, func() error { return cluster.ForgetSession(context.Background(), a.DB, s) })
	a.cluster.mqttCfg, a.cluster.sink = cfg, sink
	a.components = append(a.components, component{"mqtt-adopt", a.adoptSessions})
	return nil
}

// adoptSessions adopts stranded sessions until ctx ends.
func (a *App) adoptSessions(ctx context.Context) error {
	log := logging.Component(a.log, "mqtt-adopt")
	holder := store.LeaseHolder(a.cfg.Cluster.Instance)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(adoptEvery):
		}
		// This instance's own record again: after it stood still past its
		// lease (SIGSTOP, a paused VM), another may have adopted its
		// session and forgotten the record, and without one nobody would
		// adopt the session it has now should it die later.
		if err := cluster.RegisterSession(ctx, a.DB, a.cfg.Cluster.Instance, a.cluster.mqttCfg.ClientID); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("cannot record this instance's mqtt session")
		}
		ss, err := cluster.StrandedSessions(ctx, a.DB)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn().Err(err).Msg("cannot look for dead instances' mqtt sessions")
			}
			continue
		}
		for _, s := range ss {
			if s.Instance == a.cfg.Cluster.Instance || s.ClientID == a.cluster.mqttCfg.ClientID {
				continue
			}
			if err := a.adopt(ctx, s, holder, log); err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Str("instance", s.Instance).Msg("cannot adopt a dead instance's mqtt session; trying again")
			}
		}
	}
}

// activity is the input's Handler, noting when it last handed events on.
type activity struct {
	h    ingest.Handler
	last atomic.Int64 // Unix ns
	n    atomic.Int64 // events
}

func (h *activity) Handle(ctx context.Context, evs []event.Event) error {
	err := h.h.Handle(ctx, evs)
	if err == nil {
		h.n.Add(int64(len(evs)))
		h.last.Store(time.Now().UnixNano())
	}
	return err
}

// adopt drains and discards s, unless another instance is at it or its
// instance comes back.
func (a *App) adopt(ctx context.Context, s cluster.Session, holder string, log zerolog.Logger) error {
	l, err := store.AcquireLease(ctx, a.DB, "mqtt-adopt:"+s.Instance, holder, instanceLeaseTTL)
	var held *store.HeldError
	if errors.As(err, &held) {
		return nil // another instance adopts it
	}
	if err != nil {
		return err
	}
	lctx, stopRenewing := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() { defer close(renewed); l.Run(lctx) }() // released when stopped
	defer func() { stopRenewing(); <-renewed }()
	// Still stranded? (Adopted meanwhile by another, or its instance back.)
	ss, err := cluster.StrandedSessions(ctx, a.DB)
	if err != nil || !slices.Contains(ss, s) {
		return err
	}

	began := time.Now()
	log.Warn().Str("instance", s.Instance).Str("client_id", s.ClientID).
		Msg("a dead instance's mqtt session holds its share of the messages: taking them, then discarding the session")
	cfg := a.cluster.mqttCfg
	cfg.ClientID = s.ClientID
	act := &activity{h: a.input()}
	act.last.Store(began.UnixNano())
	m := ingest.NewMQTT(cfg, a.cfg.Ingest, act, a.cluster.sink, a.Dead, a.Contacts, log.With().Str("adopted", s.Instance).Logger())
	mctx, stopDrain := context.WithCancel(ctx)
	drained := make(chan error, 1)
	go func() { drained <- m.Run(mctx) }()
	back := false
	for {
		sleepCtx(ctx, 500*time.Millisecond)
		if ctx.Err() != nil {
			break
		}
		if alive, err := cluster.Alive(ctx, a.DB, s.Instance); err == nil && alive {
			back = true // it takes its session back; leave it
			break
		}
		quiet := time.Since(time.Unix(0, act.last.Load()))
		if (m.Ready() && quiet >= adoptQuiet) || time.Since(began) > adoptMaxDrain {
			break
		}
	}
	stopDrain() // leaves the shared subscription, acks what it took, disconnects
	if err := <-drained; err != nil {
		return fmt.Errorf("cannot drain the mqtt session of %s: %w", s.Instance, err)
	}
	if back || ctx.Err() != nil {
		log.Info().Str("instance", s.Instance).Int64("events", act.n.Load()).Msg("stopped taking a dead instance's mqtt messages: it came back, or this instance stops")
		return nil
	}
	if alive, err := cluster.Alive(ctx, a.DB, s.Instance); err != nil || alive {
		return err
	}
	if err := m.DiscardSession(ctx); err != nil {
		return err
	}
	if err := cluster.ForgetSession(ctx, a.DB, s); err != nil {
		return err
	}
	log.Warn().Str("instance", s.Instance).Int64("events", act.n.Load()).Dur("took", time.Since(began)).
		Msg("a dead instance's mqtt session drained and discarded: the others take its share")
	return nil
}
