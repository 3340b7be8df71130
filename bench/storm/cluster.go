package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/cluster"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/rules"
)

// Distributed mode (-cluster-forwarders N, docs/deploy.md): the last gasps
// are written by N forwarder "instances" (ingest.Forwarder) to the meter
// topic of an in-process kfake broker, and the one rules engine, holding
// the cluster-rules lease, consumes them through ingest.MeterConsumer and
// commits the offsets with its state under the fence, as the instance
// running the rules does. The broker runs in this process, on the same
// cores as the engine and the forwarders.

// handler is where the storm's callers hand their batches: the engine
// (single process) or a forwarder (distributed mode).
type handler interface {
	Handle(ctx context.Context, evs []event.Event) error
}

// pipeline is the path the storm's events take to the rules.
type pipeline struct {
	in []handler // caller i uses in[i%len(in)]
	// settled waits until the first n events sent are committed by the
	// rules; nil when Handle returning means that already.
	settled func(ctx context.Context, n int) error
	// batches is how many rules commits the consumer made (distributed).
	batches func() int64
	close   func()
}

// single is the single-process path: callers hand events to the engine.
func single(eng *rules.Engine) *pipeline {
	return &pipeline{in: []handler{eng}, close: func() {}}
}

// wait returns once the first n events sent are committed.
func (p *pipeline) wait(ctx context.Context, n int) error {
	if p.settled == nil {
		return nil
	}
	return p.settled(ctx, n)
}

// countingRules is the consumer's handler: the engine, counting the events
// whose batch (with its offsets) has committed.
type countingRules struct {
	eng     *rules.Engine
	n       atomic.Int64
	batches atomic.Int64 // HandleAt calls: one rules commit each
}

func (c *countingRules) HandleAt(ctx context.Context, evs []event.Event, offsets map[int32]int64) error {
	if err := c.eng.HandleAt(ctx, evs, offsets); err != nil {
		return err
	}
	c.n.Add(int64(len(evs)))
	c.batches.Add(1)
	return nil
}

// clusterPipeline takes the cluster-rules lease, fences eng with it (call
// before eng.Run), starts a kfake broker with the meter topic, n forwarders
// and the meter consumer feeding eng.
func clusterPipeline(ctx context.Context, db *store.DB, eng *rules.Engine, reg *contacts.Registry, forwarders, partitions int,
	log zerolog.Logger) (*pipeline, error) {
	if !db.Postgres() {
		return nil, errors.New("-cluster-forwarders needs -driver postgres (distributed mode runs on PostgreSQL)")
	}
	if err := cluster.Migrate(ctx, db); err != nil {
		return nil, err
	}
	lease, err := store.AcquireLease(ctx, db, cluster.RulesLease, store.LeaseHolder("storm"), 15*time.Second)
	if err != nil {
		return nil, err
	}
	const topic = cluster.DefaultMeterTopic
	eng.SetFence(cluster.Fence(topic, lease.Holder()))
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, err
	}
	kcfg := ingest.KafkaConfig{Brokers: kc.ListenAddrs()}
	n, err := ingest.EnsureMeterTopic(ctx, kcfg, topic, partitions)
	if err != nil {
		kc.Close()
		return nil, err
	}
	p := &pipeline{}
	var fwds []*ingest.Forwarder
	for range forwarders {
		f, err := ingest.NewForwarder(kcfg, topic)
		if err != nil {
			kc.Close()
			return nil, err
		}
		fwds = append(fwds, f)
		p.in = append(p.in, f)
	}
	start, err := cluster.Offsets(ctx, db, topic)
	if err != nil {
		kc.Close()
		return nil, err
	}
	cctx, stop := context.WithCancel(ctx)
	counted := &countingRules{eng: eng}
	mc := ingest.NewMeterConsumer(kcfg, topic, counted, nil, log)
	consumed, leased := make(chan struct{}), make(chan struct{})
	var consumeErr, leaseErr error
	go func() { defer close(consumed); consumeErr = mc.Run(cctx, n, start) }()
	go func() { defer close(leased); leaseErr = lease.Run(cctx) }()
	p.settled = func(ctx context.Context, want int) error {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for counted.n.Load() < int64(want) {
			select {
			case <-consumed:
				return fmt.Errorf("meter consumer stopped: %v", consumeErr)
			case <-leased:
				return fmt.Errorf("rules lease ended: %v", leaseErr)
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
		return nil
	}
	p.batches = counted.batches.Load
	p.close = func() {
		for _, f := range fwds {
			f.Close()
		}
		stop()
		<-consumed
		<-leased
		kc.Close()
	}
	return p, nil
}
