package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/cluster"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/internal/store"
)

// Distributed mode (docs/deploy.md). Every instance:
//   - takes its share of MQTT through $share/<mqtt.shared_group>, of the
//     OMS and billing topics through the consumer group, and of HTTP, and
//     forwards the events to cluster.meter_topic (ingest.Forwarder), acking
//     its input once Kafka has;
//   - sends SMS from the shared outbox (claims with SKIP LOCKED and leases);
//   - answers the API from its copy of the rules' state in PostgreSQL,
//     refreshed within about a second of each rules commit by reading only
//     what the commits changed (rules.Engine.Refresh), and forwards API
//     writes (confirm, still-out replies) through the meter topic.
//
// One of them, the holder of the cluster-rules lease, runs the rules: it
// brings its copy up to the last commit (a warm standby: no full load),
// consumes the meter topic from the offsets stored with
// it, and commits state, intents and offsets in one transaction that the
// lease fences. When it dies, another takes the lease once it lapses (15 s)
// and carries on from the stored offsets: nothing is applied twice, and an
// SMS already decided is in the outbox exactly once. Storm mode and the
// manager digests are rules decisions, so the cluster takes each once.

const (
	instanceLeaseTTL = 15 * time.Second
	// refreshEvery is how often an instance that does not run the rules
	// looks for new rules commits to copy; it waits longer when copying
	// takes long (a storm's large commits).
	refreshEvery = 250 * time.Millisecond
	// copyStaleAfter is how far behind the rules' commits a copy may fall
	// before /readyz says it is not ready: it stopped refreshing (a store
	// it cannot read, a process that was frozen).
	copyStaleAfter = 30 * time.Second
)

// rulesLeaseTTL is how long the rules lease outlives its holder's last
// renewal: a takeover after a crash waits about that long. A variable for
// the tests.
var rulesLeaseTTL = 15 * time.Second

// takeoverDelay lengthens the load after a takeover, for the tests: a
// large fleet's load, on a small one.
var takeoverDelay atomic.Int64

var (
	clusterLeader = metrics.Default.Gauge("gridbell_cluster_rules_leader",
		"Distributed mode: 1 while this instance runs the rules (holds the cluster-rules lease), else 0.")
	copyLag = metrics.Default.Gauge("gridbell_cluster_copy_lag_seconds",
		"Distributed mode: how far this instance's copy of the rules' state may be behind their last commit (0 on the instance running the rules).")
	demotions = metrics.Default.Counter("gridbell_cluster_rules_demotions_total",
		"Distributed mode: times this instance lost the rules lease while running the rules (it stood still past the lease) and went back to being a copy.")
)

// clusterState is the distributed-mode part of the App.
type clusterState struct {
	fwd     *ingest.Forwarder
	mqttCfg ingest.MQTTConfig  // this instance's MQTT input, for adopting a dead one's session
	sink    *ingest.InfluxSink // its InfluxDB sink; nil: none
	loaded  atomic.Bool        // the rules' copy has been loaded (follower) or taken over (leader)
	leader  atomic.Bool
	// current is when (Unix ns) the copy last held every rules commit: it
	// holds all made before then.
	current atomic.Int64
}

// copyBehind is how far behind the rules' last commit the copy may be.
func (c *clusterState) copyBehind() time.Duration {
	if c.leader.Load() {
		return 0
	}
	return time.Since(time.Unix(0, c.current.Load()))
}

// takeInstanceLease makes sure no two processes run under one
// cluster.instance name: the outbox's takeover of its own claims at start
// relies on it.
func (a *App) takeInstanceLease(ctx context.Context) error {
	name := "instance:" + a.cfg.Cluster.Instance
	l, err := store.AcquireLease(ctx, a.DB, name, store.LeaseHolder(a.cfg.Cluster.Instance), instanceLeaseTTL)
	var held *store.HeldError
	if errors.As(err, &held) {
		return fmt.Errorf("cannot start: another process runs as cluster.instance %q; give each instance its own name: %w", a.cfg.Cluster.Instance, held)
	}
	if err != nil {
		return err
	}
	a.Lease = l
	l.OnRenewError = func(err error) { a.log.Warn().Err(err).Msg("cannot renew this instance's lease; retrying") }
	a.holdLease(l)
	if others, err := store.LiveHolders(ctx, a.DB, singleLease); err != nil {
		return err
	} else if len(others) > 0 {
		return fmt.Errorf("cannot start in distributed mode: a single-process gridbell runs on this store (%s); every SMS would go twice: stop it first", strings.Join(others, ", "))
	}
	a.log.Info().Str("holder", l.Holder()).Str("instance", a.cfg.Cluster.Instance).Msg("distributed mode: holding this instance's lease")
	return nil
}

// importContactsOnce imports contacts_file for the whole cluster, once:
// under a lease, so instances starting together import one at a time, and
// only a file the cluster has not imported yet and that is newer than the
// one it imported last (cluster.ShouldImport). Two instances started with
// the same file import it once; one started with a stale copy imports
// nothing and uses the registry as stored.
func (a *App) importContactsOnce(ctx context.Context) error {
	if err := cluster.Migrate(ctx, a.DB); err != nil {
		return err
	}
	file, err := cluster.ReadContactsFile(a.cfg.ContactsFile)
	if err != nil {
		return err
	}
	holder := store.LeaseHolder(a.cfg.Cluster.Instance)
	var lease *store.Lease
	for lease == nil {
		l, err := store.AcquireLease(ctx, a.DB, cluster.ContactsLease, holder, instanceLeaseTTL)
		var held *store.HeldError
		switch {
		case err == nil:
			lease = l
		case errors.As(err, &held) && ctx.Err() == nil:
			a.log.Info().Str("importer", held.Holder).Msg("another instance imports its contacts_file; waiting")
			sleepCtx(ctx, time.Second)
		default:
			return fmt.Errorf("cannot take the contacts import lease: %w", err)
		}
	}
	rctx, stopRenewing := context.WithCancel(ctx)
	renewed := make(chan error, 1)
	go func() { renewed <- lease.Run(rctx) }() // released when stopped
	defer func() {
		stopRenewing()
		<-renewed
	}()
	last, ok, err := cluster.LastContactsFile(ctx, a.DB)
	if err != nil {
		return err
	}
	if yes, why := cluster.ShouldImport(file, last, ok); !yes {
		if _, err := a.Contacts.Refresh(ctx); err != nil { // an import made while this instance waited
			return err
		}
		ev := a.log.Info()
		if file.SHA256 != last.SHA256 {
			ev = a.log.Warn()
		}
		ev.Str("file", a.cfg.ContactsFile).Time("modified", file.Modified).Str("imported_by", last.Instance).
			Time("imported_modified", last.Modified).Int("customers", a.Contacts.Len()).
			Msg("contacts_file not imported: " + why + "; using the stored registry")
		return nil
	}
	rejects := filepath.Join(a.cfg.DataDir, "contacts-rejects.csv")
	a.log.Info().Str("file", a.cfg.ContactsFile).Str("rejects", rejects).Msg("importing contacts_file for the cluster")
	if _, err := a.Contacts.ImportFile(ctx, a.cfg.ContactsFile, rejects); err != nil {
		return fmt.Errorf("cannot import contacts_file: %w", err)
	}
	return cluster.RecordContactsFile(ctx, a.DB, file, a.cfg.Cluster.Instance)
}

// buildCluster makes the forwarder every input hands its events to, and
// wires the rules for distributed mode.
func (a *App) buildCluster(ctx context.Context) error {
	if err := cluster.Migrate(ctx, a.DB); err != nil {
		return err
	}
	fwd, err := ingest.NewForwarder(a.cfg.Kafka, a.cfg.Cluster.MeterTopic)
	if err != nil {
		return err
	}
	a.cluster = &clusterState{fwd: fwd}
	a.closers = append(a.closers, fwd.Close)
	a.Rules.SetRemote(fwd)
	a.components = append(a.components, component{"rate-share", a.shareRate})
	return nil
}

// shareRate keeps this instance's Twilio pace at sms.twilio.rate divided by
// the live instances, so the cluster as a whole keeps to the account's rate.
func (a *App) shareRate(ctx context.Context) error {
	last := 0
	for {
		if n, err := cluster.LiveInstances(ctx, a.DB); err == nil && n != last {
			a.Outbox.ShareRate(n)
			last = n
			a.log.Info().Int("instances", n).Float64("rate", a.Outbox.Rate()).Msg("distributed mode: Twilio rate shared")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// input is the handler of every input: the rules, or in distributed mode
// the forwarder to the meter topic.
func (a *App) input() ingest.Handler {
	if a.cluster != nil {
		return a.cluster.fwd
	}
	return a.Rules
}

// clusterReady says why an instance in distributed mode is not ready.
func (a *App) clusterReady() error {
	if a.cluster == nil {
		return nil
	}
	if !a.cluster.loaded.Load() {
		return errors.New("distributed mode: the rules' state is not loaded yet")
	}
	if d := a.cluster.copyBehind(); d > copyStaleAfter {
		return fmt.Errorf("distributed mode: this instance's copy of the rules' state is %s behind (not refreshed)", d.Round(time.Second))
	}
	return nil
}

// runClusterRules follows the rules' state as a copy until this instance
// takes the cluster-rules lease, then runs the rules until ctx ends. A lost
// lease (this process stood still past its time to live, a SIGSTOP or a
// paused VM, and another took over) ends the rules' run, not the process:
// the engine becomes a copy again (rules.Engine.Demote) and the instance
// follows and waits for the lease as before.
func (a *App) runClusterRules(ctx context.Context) error {
	log := logging.Component(a.log, "cluster")
	for {
		lease := a.awaitRulesLease(ctx, log)
		if lease == nil {
			return nil // stopping
		}
		err := a.lead(ctx, lease, log)
		if err == nil || ctx.Err() != nil || !errors.Is(err, store.ErrLeaseLost) {
			return err
		}
		log.Warn().Err(err).Msg("distributed mode: another instance took the rules over; this one is a copy again")
		demotions.Inc()
		if err := a.Rules.Demote(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		a.cluster.current.Store(time.Now().UnixNano())
	}
}

// awaitRulesLease keeps the copy up to date (follow) until this instance
// takes the rules lease, and returns it; nil once ctx ends.
func (a *App) awaitRulesLease(ctx context.Context, log zerolog.Logger) *store.Lease {
	holder := store.LeaseHolder(a.cfg.Cluster.Instance)
	fctx, stopFollowing := context.WithCancel(ctx)
	var following sync.WaitGroup
	following.Add(1)
	go func() {
		defer following.Done()
		a.follow(fctx, log)
	}()
	defer func() {
		stopFollowing()
		following.Wait()
	}()
	for {
		l, err := store.AcquireLease(ctx, a.DB, cluster.RulesLease, holder, rulesLeaseTTL)
		var held *store.HeldError
		switch {
		case err == nil:
			return l
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &held):
			log.Debug().Str("leader", held.Holder).Msg("another instance runs the rules")
		default:
			log.Warn().Err(err).Msg("cannot check the rules lease, retrying")
			sleepCtx(ctx, time.Second)
		}
	}
}

// follow brings the rules' copy up to date whenever the rules have
// committed, reading only what changed (see rules.Engine.Refresh). It keeps
// the copy's lag (copyBehind) for /readyz and the metrics.
func (a *App) follow(ctx context.Context, log zerolog.Logger) {
	var seen int64 = -1
	thr := logging.Throttle{Period: 30 * time.Second}
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = refreshEvery
		copyLag.Set(a.cluster.copyBehind().Seconds())
		t0 := time.Now()
		n, err := cluster.Commits(ctx, a.DB)
		if err == nil && n != seen {
			err = a.Rules.Refresh(ctx)
		}
		if err != nil {
			if ok, k := thr.Allow(); ok && ctx.Err() == nil {
				log.Warn().Err(err).Int("suppressed", k).Dur("behind", a.cluster.copyBehind()).Msg("cannot copy the rules' state, retrying")
			}
			continue
		}
		seen = n
		a.cluster.current.Store(t0.UnixNano()) // every commit counted before t0 is in the copy
		a.cluster.loaded.Store(true)
		copyLag.Set(a.cluster.copyBehind().Seconds())
		wait = max(refreshEvery, time.Since(t0)/4)
	}
}

// lead runs the rules under lease: a final refresh of the warm copy after
// the takeover (every commit of the former holder is in it, and none can
// follow; it reads only what changed since the copy's last refresh), then
// the rules and the meter-topic consumer, until ctx ends or the lease is
// lost.
//
// The lease is renewed from the moment it is taken until the rules have
// stopped: through the refresh, however long a large fleet's takes, and
// through the last commit of a graceful stop, which lands under the lease.
// Only then is the lease released, and the next holder takes over at once.
// A lease lost meanwhile (this process stalled past its time to live, or
// the store could not be reached for that long) ends the refresh or the
// rules with an error, and the instance goes back to being a copy
// (runClusterRules); the fence refuses whatever it would still commit.
func (a *App) lead(ctx context.Context, lease *store.Lease, log zerolog.Logger) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lease.OnRenewError = func(err error) {
		log.Warn().Err(err).Msg("cannot renew the rules lease; retrying")
	}
	renewCtx, stopRenewing := context.WithCancel(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		if err := lease.Run(renewCtx); err != nil && renewCtx.Err() == nil {
			cancel(fmt.Errorf("distributed mode: %w", err))
		}
	}()
	defer func() {
		stopRenewing() // releases the lease, once the rules have stopped
		<-renewed
	}()

	t0 := time.Now()
	if d := takeoverDelay.Load(); d > 0 {
		sleepCtx(ctx, time.Duration(d))
	}
	if err := a.Rules.Refresh(ctx); err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return fmt.Errorf("cannot bring the rules' state up to date after taking the lease: %w", cause)
		}
		if ctx.Err() != nil {
			return nil // stopping
		}
		return fmt.Errorf("cannot bring the rules' state up to date after taking the lease: %w", err)
	}
	a.Rules.SetFence(cluster.Fence(a.cfg.Cluster.MeterTopic, lease.Holder()))
	a.cluster.loaded.Store(true)
	a.cluster.leader.Store(true)
	defer a.cluster.leader.Store(false)
	clusterLeader.Set(1)
	defer clusterLeader.Set(0)
	copyLag.Set(0)
	log.Info().Str("holder", lease.Holder()).Dur("load", time.Since(t0)).Msg("distributed mode: this instance runs the rules")

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		// Run ends when ctx does, after committing what it took: the
		// lease is still renewed then.
		if err := a.Rules.Run(ctx); err != nil && ctx.Err() == nil {
			cancel(err)
		}
	}()
	go func() {
		defer wg.Done()
		a.consume(ctx, log)
	}()
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// consume feeds the meter topic to the rules from the stored offsets; after
// a failed batch (the rules then reload their state) it starts again from
// the offsets stored with that state.
func (a *App) consume(ctx context.Context, log zerolog.Logger) {
	topic := a.cfg.Cluster.MeterTopic
	mc := ingest.NewMeterConsumer(a.cfg.Kafka, topic, a.Rules, a.Dead, log)
	thr := logging.Throttle{Period: 10 * time.Second}
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		err := func() error {
			n, err := ingest.EnsureMeterTopic(ctx, a.cfg.Kafka, topic, ingest.DefaultMeterPartitions)
			if err != nil {
				return err
			}
			start, err := cluster.Offsets(ctx, a.DB, topic)
			if err != nil {
				return err
			}
			return mc.Run(ctx, n, start)
		}()
		if ctx.Err() != nil {
			return
		}
		if ok, n := thr.Allow(); ok && err != nil {
			log.Error().Err(err).Int("suppressed", n).Dur("retry_in", wait).Msg("meter topic consumer stopped; starting again from the stored offsets")
		}
		if time.Since(began) > time.Minute {
			wait = 100 * time.Millisecond // a failure after a long run starts the backoff afresh
		}
		sleepCtx(ctx, wait)
		wait = min(2*wait, 5*time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// RulesLeader reports whether this instance runs the rules (distributed
// mode); false in single-process mode.
func (a *App) RulesLeader() bool { return a.cluster != nil && a.cluster.leader.Load() }
