package ingest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/metrics"
)

// mqttClient is the part of paho's client MQTT uses.
type mqttClient interface {
	Connect() paho.Token
	Subscribe(topic string, qos byte, callback paho.MessageHandler) paho.Token
	Disconnect(quiesce uint)
}

// MQTT takes meter readings and events from an MQTT broker (CONTRACT §1).
//
// Delivery: a persistent session (clean session off) with a QoS 1
// subscription, and paho's automatic ack turned off. A message is
// acknowledged only after its events were handed to the Handler and its
// rejections kept as dead letters; a message not acknowledged is delivered
// again by the broker on the next connection. paho runs each message's
// callback on its own goroutine (order does not matter: rules are
// idempotent and order-insensitive), so the network loop never waits for
// the store; MaxInflight workers handle messages, so at most that many are
// handled at once, and the callbacks waiting for a worker are bounded by the
// broker's QoS 1 in-flight window, since unacknowledged messages hold it.
type MQTT struct {
	cfg  MQTTConfig
	lim  Limits
	h    Handler
	sink *InfluxSink
	dl   *DeadLetters
	dir  Directory
	log  zerolog.Logger

	work     chan paho.Message // unbuffered: taken by one of MaxInflight workers
	ready    atomic.Bool
	wg       sync.WaitGroup // workers running
	ctx      atomic.Pointer[context.Context]
	rejects  rejecter
	accepted acceptCounts
	errThr   logging.Throttle // "cannot hand on" log lines
	rejThr   logging.Throttle // "rejected" log lines
	connThr  logging.Throttle // failed connection attempts
	unknown  sync.Map         // concentrator → *metrics.Counter of unknown meters
}

// NewMQTT returns an MQTT input; Run connects it. sink may be nil (Influx
// off) and dir may be nil (no unknown-meter counts); when set, the sink
// takes its readings' areas from dir, not from its own. With no brokers
// configured it connects to the embedded broker at cfg.EmbeddedListen.
func NewMQTT(cfg MQTTConfig, lim Limits, h Handler, sink *InfluxSink, dl *DeadLetters, dir Directory, log zerolog.Logger) *MQTT {
	cfg.Defaults()
	lim.Defaults()
	return &MQTT{cfg: cfg, lim: lim, h: h, sink: sink, dl: dl, dir: dir, log: log,
		work:     make(chan paho.Message),
		rejects:  rejecter{dl: dl, source: SourceMQTT},
		accepted: newAcceptCounts(SourceMQTT),
		errThr:   logging.Throttle{Period: 10 * time.Second},
		rejThr:   logging.Throttle{Period: 10 * time.Second},
		connThr:  logging.Throttle{Period: 30 * time.Second},
	}
}

// Ready reports whether the subscription is acknowledged by the broker.
func (m *MQTT) Ready() bool { return m.ready.Load() }

// Filter returns the subscription filter: prefix/#, or
// $share/<group>/prefix/# with a shared group.
func (m *MQTT) Filter() string {
	f := m.cfg.TopicPrefix + "/#"
	if m.cfg.SharedGroup != "" {
		f = "$share/" + m.cfg.SharedGroup + "/" + f
	}
	return f
}

// Run connects, subscribes on every (re)connection, and handles messages
// until ctx ends. Then it finishes the messages in hand (for up to 5 s),
// acknowledges them and disconnects; any not acknowledged by then come
// again on the next run.
func (m *MQTT) Run(ctx context.Context) error {
	m.ctx.Store(&ctx)
	opts, err := m.options()
	if err != nil {
		return err
	}
	c := paho.NewClient(opts)
	return m.run(ctx, c)
}

func (m *MQTT) run(ctx context.Context, c mqttClient) error {
	hctx, stop := graceful(ctx)
	defer stop()
	for range m.cfg.MaxInflight {
		m.wg.Add(1)
		go m.worker(ctx, hctx)
	}
	// With ConnectRetry, Connect keeps trying in the background; the token
	// completes on the first success, which we need not wait for.
	c.Connect()
	<-ctx.Done()
	m.ready.Store(false)
	m.wg.Wait() // the messages in hand are stored and acknowledged first
	c.Disconnect(250)
	return nil
}

func (m *MQTT) brokers() []string {
	if len(m.cfg.Brokers) > 0 {
		return m.cfg.Brokers
	}
	return []string{"tcp://" + m.cfg.EmbeddedListen}
}

func (m *MQTT) options() (*paho.ClientOptions, error) {
	tlsCfg, err := m.cfg.TLS.build()
	if err != nil {
		return nil, fmt.Errorf("cannot configure mqtt: %w", err)
	}
	opts := paho.NewClientOptions()
	for _, b := range m.brokers() {
		opts.AddBroker(b)
	}
	opts.SetClientID(m.cfg.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(m.onMessage).
		SetOnConnectHandler(m.onConnect).
		SetConnectionLostHandler(m.onLost).
		SetConnectionNotificationHandler(m.onNotice)
	if m.cfg.Username != "" {
		opts.SetUsername(m.cfg.Username)
		opts.SetPassword(m.cfg.Password.Reveal())
	}
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	return opts, nil
}

// onConnect (re)subscribes. The broker may already be delivering the
// session's queued messages; they reach the default handler, so none is lost
// before the subscription is acknowledged.
func (m *MQTT) onConnect(c paho.Client) {
	filter := m.Filter()
	ctx := *m.ctx.Load()
	err := retry(ctx, m.log, &m.errThr, "subscribe to "+filter, func() error {
		if !c.IsConnectionOpen() {
			return nil // lost again; the next onConnect subscribes
		}
		tok := c.Subscribe(filter, 1, nil)
		tok.Wait()
		if err := tok.Error(); err != nil {
			return err
		}
		if st, ok := tok.(*paho.SubscribeToken); ok {
			for _, q := range st.Result() {
				if q == 0x80 {
					return fmt.Errorf("broker refused the subscription to %s", filter)
				}
			}
		}
		m.ready.Store(true)
		return nil
	})
	if err == nil && m.ready.Load() {
		m.log.Info().Str("filter", filter).Msg("mqtt subscribed")
	}
}

// onNotice logs failed connection attempts: paho retries them silently.
func (m *MQTT) onNotice(_ paho.Client, n paho.ConnectionNotification) {
	f, ok := n.(paho.ConnectionNotificationBrokerFailed)
	if !ok {
		return
	}
	if ok, held := m.connThr.Allow(); ok {
		m.log.Warn().Err(f.Reason).Str("broker", f.Broker.Redacted()).Int("suppressed", held).Msg("cannot connect to mqtt broker; retrying")
	}
}

func (m *MQTT) onLost(_ paho.Client, err error) {
	m.ready.Store(false)
	m.log.Warn().Err(err).Msg("mqtt connection lost; reconnecting")
}

// onMessage runs on a goroutine of its own (order does not matter), so it
// may wait for a free worker without stalling paho's network loop.
func (m *MQTT) onMessage(_ paho.Client, msg paho.Message) {
	ctx := *m.ctx.Load()
	select {
	case m.work <- msg:
	case <-ctx.Done(): // not acknowledged: the broker sends it again
	}
}

// worker handles messages until ctx ends. The workers are long-lived, so
// their stacks have grown to what decoding needs once, not per message. A
// message in hand when ctx ends is finished under hctx (see graceful).
func (m *MQTT) worker(ctx, hctx context.Context) {
	defer m.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-m.work:
			if m.process(hctx, msg.Topic(), msg.Payload()) == nil {
				msg.Ack()
			}
		}
	}
}

// process decodes one message, keeps its rejections, hands its events on and
// copies its readings to Influx. It returns nil once the message may be
// acknowledged, or ctx's error.
func (m *MQTT) process(ctx context.Context, topic string, payload []byte) error {
	evs, err := DecodeMQTT(m.cfg.TopicPrefix, topic, payload, time.Now(), m.lim)
	if err != nil {
		if ok, n := m.rejThr.Allow(); ok {
			m.log.Warn().Str("topic", topic).Int("suppressed", n).Msg(err.Error())
		}
		if err := retry(ctx, m.log, &m.errThr, "keep dead letter", func() error {
			return m.rejects.keep(ctx, topic, payload, err)
		}); err != nil {
			return err
		}
	}
	if len(evs) == 0 {
		return nil
	}
	if err := retry(ctx, m.log, &m.errThr, "hand on mqtt events", func() error {
		return m.h.Handle(ctx, evs)
	}); err != nil {
		return err
	}
	m.accepted.add(evs)
	m.afterHandle(evs)
	return nil
}

// afterHandle counts unknown meters and copies readings to Influx. With a
// Directory, one lookup per reading serves both: the sink is given the area.
func (m *MQTT) afterHandle(evs []event.Event) {
	for i := range evs {
		r := evs[i].Reading
		switch {
		case r == nil:
		case m.dir == nil:
			if m.sink != nil {
				m.sink.Write(*r)
			}
		default:
			area, ok := m.dir.MeterArea(r.Meter)
			if !ok {
				m.unknownCounter(r.Concentrator).Inc()
			}
			if m.sink != nil {
				m.sink.add(r, area)
			}
		}
	}
}

// unknownCounter returns the unknown-meter counter of a concentrator,
// cached: the metrics registry takes a lock per lookup.
func (m *MQTT) unknownCounter(conc string) *metrics.Counter {
	if c, ok := m.unknown.Load(conc); ok {
		return c.(*metrics.Counter)
	}
	c := metrics.Default.Counter("gridbell_unknown_meter_readings_total",
		"Readings from meters not in the contacts file, by concentrator.", "concentrator", conc)
	m.unknown.Store(conc, c)
	return c
}
