// Package app wires gridbell's stages into the running service: the store,
// the contacts registry, the notify outbox, the rules engine, the ingest
// sources and the HTTP API. cmd/gridbell stays thin and tests can run the
// whole service in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// component is one long-lived part, stopped in reverse start order.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// App is the assembled service.
type App struct {
	cfg *config.Config
	log zerolog.Logger

	DB       *store.DB
	Lease    *store.Lease // this process's hold on the store
	Contacts *contacts.Registry
	Outbox   *notify.Outbox
	Rules    *rules.Engine
	Dead     *ingest.DeadLetters
	Broker   *ingest.Broker // nil with external brokers
	MQTT     *ingest.MQTT
	Kafka    *ingest.Kafka // nil when Kafka is off
	HTTP     *httpapi.Server

	cluster    *clusterState // nil unless cluster.enabled
	health     *healthProbe
	components []component
	closers    []func() error // run in reverse by close
}

// New opens the store, loads contacts and builds every component. Nothing
// runs until Run.
func New(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*App, error) {
	a := &App{cfg: cfg, log: log}
	if err := a.build(ctx); err != nil {
		a.close() // what was opened before the failure
		return nil, startOnFullDisk(cfg.Store, cfg.DataDir, err)
	}
	return a, nil
}

func (a *App) build(ctx context.Context) error {
	cfg := a.cfg
	var err error
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("cannot create data_dir: %w", err)
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		a.log.Warn().Str("data_dir", cfg.DataDir).Str("mode", fi.Mode().Perm().String()).
			Msg("data_dir is open to other users; it holds phone numbers: chmod 700 it")
	}
	if a.DB, err = store.Open(ctx, cfg.Store, cfg.DataDir); err != nil {
		return err
	}
	a.closers = append(a.closers, a.DB.Close)
	if cfg.Cluster.Enabled {
		err = a.takeInstanceLease(ctx)
	} else {
		err = a.takeLease(ctx)
	}
	if err != nil {
		return err
	}
	if a.health, err = newHealthProbe(ctx, a.DB, cfg.DataDir, logging.Component(a.log, "health")); err != nil {
		return err
	}
	a.components = append(a.components, component{"health", a.health.Run})
	if err := a.openContacts(ctx); err != nil {
		return err
	}
	if err := a.buildNotifyAndRules(ctx); err != nil {
		return err
	}
	if err := a.buildIngest(ctx); err != nil {
		return err
	}
	if a.cfg.Retention > 0 {
		rt := newRetention(a.cfg.Retention, a.Outbox, a.Rules, a.Dead, logging.Component(a.log, "retention"))
		a.components = append(a.components, component{"retention", rt.Run})
	}
	return a.buildHTTP(ctx)
}

func (a *App) openContacts(ctx context.Context) error {
	reg, err := contacts.Open(ctx, a.DB, a.log) // names itself "contacts"
	if err != nil {
		return err
	}
	a.Contacts = reg
	if a.cfg.ContactsFile == "" {
		a.log.Info().Int("customers", reg.Len()).Msg("no contacts_file configured: using the stored registry")
		return nil
	}
	if _, err := os.Stat(a.cfg.ContactsFile); errors.Is(err, fs.ErrNotExist) {
		// An optional file (a Kubernetes ConfigMap marked optional, a
		// drop-in not there yet) must not stop the service: the registry
		// holds the last import, and imports made later are picked up.
		a.log.Warn().Str("file", a.cfg.ContactsFile).Int("customers", reg.Len()).
			Msg("contacts_file does not exist: using the stored registry")
		return nil
	}
	if a.cfg.Cluster.Enabled {
		return a.importContactsOnce(ctx)
	}
	rejects := filepath.Join(a.cfg.DataDir, "contacts-rejects.csv")
	a.log.Info().Str("file", a.cfg.ContactsFile).Str("rejects", rejects).Msg("importing contacts_file")
	if _, err := reg.ImportFile(ctx, a.cfg.ContactsFile, rejects); err != nil {
		return fmt.Errorf("cannot import contacts_file: %w", err)
	}
	return nil // the registry logged "contacts imported" with its figures
}

func (a *App) buildNotifyAndRules(ctx context.Context) error {
	clk, err := clock.FromEnv(os.Getenv)
	if err != nil {
		return err
	}
	if _, off := clk.(clock.Offset); off {
		a.log.Warn().Str("offset", os.Getenv(clock.OffsetEnv)).Msg("this instance's clock is set off the host's, for a test")
	}
	sender, err := notify.NewSender(a.cfg.SMS, a.cfg.DataDir, logging.Component(a.log, "sender"))
	if err != nil {
		return err
	}
	a.Outbox, err = notify.NewOutbox(a.cfg.SMS, a.cfg.QuietHours, a.DB, a.Contacts, sender, clk, logging.Component(a.log, "notify"))
	if err != nil {
		return err
	}
	a.Outbox.SetInstance(a.cfg.Cluster.Instance)
	a.Rules, err = rules.New(a.cfg.Rules, a.DB, a.Contacts, a.Outbox, clk, logging.Component(a.log, "rules"))
	if err != nil {
		return err
	}
	runRules := a.Rules.Run
	if a.cfg.Cluster.Enabled {
		if err := a.buildCluster(ctx); err != nil {
			return err
		}
		runRules = a.runClusterRules
	}
	// notify delivers what rules decide: start it first, stop it last.
	a.components = append(a.components,
		component{"notify", a.Outbox.Run},
		component{"rules", runRules})
	if a.cfg.ContactsRefresh > 0 {
		rl := newContactsReloader(a.Contacts, a.cfg.ContactsRefresh, logging.Component(a.log, "contacts-reload"))
		a.components = append(a.components, component{"contacts-reload", rl.Run})
	} else {
		a.log.Info().Msg("contacts_refresh is 0: imports by other processes are seen only after a restart")
	}
	// Opt-outs and Twilio verdicts recorded by another process on the store
	// (gridbell contacts commands today, peer instances later) within seconds.
	a.components = append(a.components, component{"contacts-states", func(ctx context.Context) error {
		return a.Contacts.FollowStates(ctx, phoneStatesEvery)
	}})
	return nil
}

// phoneStatesEvery is how often the registry reads the phone states other
// processes recorded: one indexed query on rows changed in the last minute.
const phoneStatesEvery = 2 * time.Second

func (a *App) buildIngest(ctx context.Context) error {
	var err error
	if a.Dead, err = ingest.OpenDeadLetters(ctx, a.DB, a.cfg.Ingest); err != nil {
		return err
	}
	a.Dead.SetRoutes(ingest.Routes{MQTTPrefix: a.cfg.MQTT.TopicPrefix, OMSTopic: a.cfg.Kafka.OMSTopic, BillingTopic: a.cfg.Kafka.BillingTopic})
	mqttCfg := a.cfg.MQTT
	if a.cluster != nil && mqttCfg.SharedGroup == "" {
		mqttCfg.SharedGroup = "gridbell" // each instance takes a share (docs/deploy.md)
	}
	if len(mqttCfg.Brokers) == 0 {
		var auth ingest.BrokerAuth
		if auth, mqttCfg, err = ingest.EmbeddedBrokerAuth(mqttCfg); err != nil {
			return err
		}
		if a.Broker, err = ingest.StartBroker(mqttCfg.EmbeddedListen, filepath.Join(a.cfg.DataDir, "broker.db"), auth, logging.Component(a.log, "broker")); err != nil {
			return err
		}
		a.closers = append(a.closers, a.Broker.Close)
		mqttCfg.Brokers = []string{"tcp://" + a.Broker.Addr()}
	}
	sink, err := ingest.NewInflux(a.cfg.Influx, a.cfg.DataDir, a.Contacts, logging.Component(a.log, "influx"))
	if err != nil {
		return err
	}
	if sink != nil {
		a.components = append(a.components, component{"influx", sink.Run})
	}
	a.MQTT = ingest.NewMQTT(mqttCfg, a.cfg.Ingest, a.input(), sink, a.Dead, a.Contacts, logging.Component(a.log, "mqtt"))
	if a.Broker != nil {
		a.Broker.Watch(a.MQTT.Traffic) // a subscription that takes nothing shows in Ready
	}
	a.components = append(a.components, component{"mqtt", a.MQTT.Run})
	if a.cluster != nil && a.Broker == nil {
		if err := a.registerSession(ctx, mqttCfg, sink); err != nil {
			return err
		}
	}
	if len(a.cfg.Kafka.Brokers) > 0 {
		a.Kafka = ingest.NewKafka(a.cfg.Kafka, a.cfg.Ingest, a.input(), a.Dead, logging.Component(a.log, "kafka"))
		a.components = append(a.components, component{"kafka", a.Kafka.Run})
	} else {
		a.log.Info().Msg("kafka off: no kafka.brokers configured; OMS and billing events arrive over HTTP")
	}
	return nil
}

func (a *App) buildHTTP(ctx context.Context) error {
	sessions, err := httpapi.OpenStore(ctx, a.DB)
	if err != nil {
		return err
	}
	events := ingest.NewHTTP(a.cfg.Ingest, a.input(), a.Dead, logging.Component(a.log, "http-ingest"))
	a.HTTP = httpapi.New(a.cfg.HTTP, a.cfg.Auth, httpapi.Deps{
		Outages:       a.Rules,
		Deliveries:    a.Outbox,
		Quality:       a.Contacts,
		Contacts:      a.Contacts,
		ContactsDir:   a.cfg.DataDir,
		OMSEvents:     events.OMS(),
		Billing:       events.Billing(),
		TwilioStatus:  a.Outbox.StatusWebhook(),
		TwilioInbound: a.Outbox.InboundWebhook(a.Rules),
		DeadLetters:   a.Dead,
		Handler:       a.input(),
		Ready:         a.Ready,
		Store:         sessions,
		Directory:     a.Contacts,
		History:       a.Outbox,
		Overview:      a.Rules,
	}, logging.Component(a.log, "http"))
	a.components = append(a.components, component{"http", a.HTTP.Run})
	return nil
}

// Ready reports nil once the store is open, contacts are loaded, MQTT
// subscriptions are acknowledged and, with Kafka, the group has joined; and
// then while the store commits, the disk under data_dir has room, the
// rules are not reloading their state and (embedded broker) the MQTT
// subscription takes the traffic the broker has for it. Otherwise it says
// why.
func (a *App) Ready() error {
	// The store is open and the contacts are loaded once New has returned.
	if err := a.health.Err(); err != nil {
		return err
	}
	if err := a.clusterReady(); err != nil {
		return err
	}
	if err := a.Rules.Ready(); err != nil {
		return err
	}
	if err := a.MQTT.Stalled(); err != nil {
		return err
	}
	switch {
	case !a.MQTT.Ready():
		return errors.New("mqtt subscriptions not acknowledged")
	case a.Kafka != nil && !a.Kafka.Ready():
		return errors.New("kafka consumer group not joined")
	}
	return nil
}

// Run starts every component and blocks until ctx is done or one of them
// fails; then it stops them in reverse order, logging how long each took.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	type running struct {
		cancel context.CancelFunc
		done   chan error
	}
	failed := make(chan error, len(a.components))
	var started []running
	for _, c := range a.components {
		cctx, cancel := context.WithCancel(context.Background())
		r := running{cancel: cancel, done: make(chan error, 1)}
		go func(c component) {
			err := c.run(cctx)
			if err != nil && cctx.Err() == nil {
				failed <- fmt.Errorf("%s stopped: %w", c.name, err)
			}
			r.done <- err
		}(c)
		started = append(started, r)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-failed:
		a.log.Error().Err(runErr).Msg("a component failed; stopping")
	}
	for i := len(started) - 1; i >= 0; i-- {
		t0 := time.Now()
		started[i].cancel()
		err := <-started[i].done
		ev := a.log.Info()
		if err != nil && !errors.Is(err, context.Canceled) {
			ev = a.log.Warn().Err(err)
		}
		ev.Str("component", a.components[i].name).Dur("took", time.Since(t0)).Msg("stopped")
	}
	return runErr
}

// close releases the store and broker, once: New on failure, else Run.
func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Warn().Err(err).Msg("close")
		}
	}
	a.closers = nil
}

// OpenDeadLetters opens just the store and its dead letters, for the CLI.
// The returned func closes the store.
func OpenDeadLetters(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*ingest.DeadLetters, func() error, error) {
	db, err := store.Open(ctx, cfg.Store, cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	dl, err := ingest.OpenDeadLetters(ctx, db, cfg.Ingest)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	dl.SetRoutes(ingest.Routes{MQTTPrefix: cfg.MQTT.TopicPrefix, OMSTopic: cfg.Kafka.OMSTopic, BillingTopic: cfg.Kafka.BillingTopic})
	return dl, db.Close, nil
}
