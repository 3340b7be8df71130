package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/logging"
)

// mqttClient is the part of paho's client MQTT uses.
type mqttClient interface {
	Connect() paho.Token
	Subscribe(topic string, qos byte, callback paho.MessageHandler) paho.Token
	Unsubscribe(topics ...string) paho.Token
	Disconnect(quiesce uint)
}

// MQTT takes meter readings and events from an MQTT broker (docs/interfaces.md §1).
//
// Delivery: a persistent session (clean session off) with a QoS 1
// subscription, and paho's automatic ack turned off. A message is
// acknowledged only after its events were handed to the Handler and its
// rejections kept as dead letters; a message not acknowledged is delivered
// again by the broker on the next connection.
//
// Flow control: paho hands messages over one at a time on its network
// goroutine (ordered), and at most MaxInflight messages are taken and not
// yet acknowledged (the in-flight window). When the window is full the
// hand-over waits, paho stops reading the connection, and the broker holds
// what follows: a slow store, rules engine or InfluxDB slows the intake
// instead of piling readings up in memory. A few long-lived workers take
// what waits in the window, up to mqttBatchEvents events, decode it and hand
// it on in one Handler call: one rules request for many one-reading messages.
type MQTT struct {
	cfg  MQTTConfig
	lim  Limits
	h    Handler
	sink *InfluxSink
	dl   *DeadLetters
	dir  Directory
	log  zerolog.Logger

	work     chan paho.Message // taken from paho, not yet handled; cap MaxInflight
	window   chan struct{}     // a token per message taken and not yet acknowledged; cap MaxInflight
	ready    atomic.Bool
	wg       sync.WaitGroup // workers running
	ctx      atomic.Pointer[context.Context]
	rejects  rejecter
	accepted acceptCounts
	errThr   logging.Throttle // "cannot hand on" log lines
	rejThr   logging.Throttle // "rejected" log lines
	connThr  logging.Throttle // failed connection attempts

	pending    atomic.Int64  // unix nanos of the broker's first message not followed by a take; 0: none (see Traffic)
	lostAt     atomic.Int64  // unix nanos when the broker closed the connection (EOF); 0: not so
	stalled    atomic.Bool   // a stall was logged, not yet its end
	stallAfter time.Duration // MQTTStallAfter; shorter in tests
}

// mqttWorkers decode and hand on messages; while one waits for the
// Handler's commit, the others decode.
const mqttWorkers = 4

// mqttBatchEvents bounds the events a worker hands on in one call: about
// one InfluxDB batch.
const mqttBatchEvents = 5000

// Reconnecting: attempts at most mqttReconnectMax apart (paho doubles the
// wait from a second up to it), each given mqttConnectTimeout, so gridbell
// is subscribed again within about mqttReconnectMax plus a connect of the
// broker's return, however long it was away (docs/reliability.md).
const (
	mqttReconnectMax   = 4 * time.Second
	mqttConnectTimeout = 5 * time.Second
)

// mqttTakeoverWithin: a connection the broker closed (EOF) and a new one it
// took within this long is most likely a session takeover: another client
// connected with gridbell's client id.
const mqttTakeoverWithin = 3 * time.Second

// MQTTStallAfter is how long the broker may hold traffic for gridbell's
// subscription without gridbell taking any message before Stalled reports
// it (with the embedded broker, which tells; see Traffic).
const MQTTStallAfter = 30 * time.Second

// NewMQTT returns an MQTT input; Run connects it. sink may be nil (Influx
// off) and dir may be nil (no unknown-meter counts); when set, the sink
// takes its readings' areas from dir, not from its own. With no brokers
// configured it connects to the embedded broker at cfg.EmbeddedListen.
func NewMQTT(cfg MQTTConfig, lim Limits, h Handler, sink *InfluxSink, dl *DeadLetters, dir Directory, log zerolog.Logger) *MQTT {
	cfg.Defaults()
	lim.Defaults()
	return &MQTT{cfg: cfg, lim: lim, h: h, sink: sink, dl: dl, dir: dir, log: log,
		work:       make(chan paho.Message, cfg.MaxInflight),
		window:     make(chan struct{}, cfg.MaxInflight),
		rejects:    rejecter{dl: dl, source: SourceMQTT},
		accepted:   newAcceptCounts(SourceMQTT),
		errThr:     logging.Throttle{Period: 10 * time.Second},
		rejThr:     logging.Throttle{Period: 10 * time.Second},
		connThr:    logging.Throttle{Period: 30 * time.Second},
		stallAfter: MQTTStallAfter,
	}
}

// Ready reports whether the subscription is acknowledged by the broker.
func (m *MQTT) Ready() bool { return m.ready.Load() }

// Traffic tells m that the broker took a message for its subscription
// (Broker.Watch). With it, Stalled can tell a subscription that takes
// nothing while the broker has traffic for it.
func (m *MQTT) Traffic() {
	if m.pending.Load() == 0 {
		m.pending.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// Stalled reports an error while the broker has held traffic for m's
// subscription for over MQTTStallAfter and m has taken no message since:
// intake silenced (its session taken over, a broker fault), whatever it
// says of its connection. Without Traffic it reports nothing; the metric
// gridbell_mqtt_last_message_age_seconds serves an alert then.
func (m *MQTT) Stalled() error {
	p := m.pending.Load()
	if p == 0 {
		return nil
	}
	held := time.Since(time.Unix(0, p))
	if held <= m.stallAfter {
		return nil
	}
	if !m.stalled.Swap(true) {
		m.log.Error().Dur("held", held).Str("client_id", m.cfg.ClientID).
			Msg("mqtt intake stalled: the broker has traffic for gridbell's subscription and gridbell takes none")
	}
	return fmt.Errorf("mqtt intake stalled: the broker has held traffic for the subscription %s for %s and none was taken",
		m.Filter(), held.Truncate(time.Second))
}

// took records that a message was taken from the broker.
func (m *MQTT) took() {
	mqttLastTaken.Store(time.Now().UnixNano())
	if m.pending.Load() != 0 {
		m.pending.Store(0)
		if m.stalled.Swap(false) {
			m.log.Info().Msg("mqtt intake resumed")
		}
	}
}

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
	mqttLastTaken.CompareAndSwap(0, time.Now().UnixNano())
	mqttMaxInflight.Set(float64(m.cfg.MaxInflight))
	mqttUnacked.Store(&m.window)
	for range min(mqttWorkers, m.cfg.MaxInflight) {
		m.wg.Add(1)
		go m.worker(ctx, hctx)
	}
	// With ConnectRetry, Connect keeps trying in the background; the token
	// completes on the first success, which we need not wait for.
	c.Connect()
	<-ctx.Done()
	m.ready.Store(false)
	defer mqttConnected.Set(0)
	if m.cfg.SharedGroup != "" {
		// Leave the group first: the broker then gives new messages to the
		// other members instead of queueing them in this session until it
		// returns (a scale-down, a rolling restart).
		if tok := c.Unsubscribe(m.Filter()); !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
			m.log.Warn().Err(tok.Error()).Msg("cannot leave the shared subscription; the broker keeps this session's share until it returns")
		}
	}
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
		SetOrderMatters(true). // onMessage waits for room in the window: flow control
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(mqttReconnectMax).
		SetConnectTimeout(mqttConnectTimeout).
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
	if useBufferedConn(m.brokers()) {
		opts.SetCustomOpenConnectionFn(openBuffered) // mqttconn.go
	}
	return opts, nil
}

// onConnect (re)subscribes. The broker may already be delivering the
// session's queued messages; they reach the default handler, so none is lost
// before the subscription is acknowledged.
func (m *MQTT) onConnect(c paho.Client) {
	mqttConnected.Set(1)
	if at := m.lostAt.Swap(0); at != 0 && time.Since(time.Unix(0, at)) < mqttTakeoverWithin {
		mqttTakeovers.Inc()
		m.log.Error().Str("client_id", m.cfg.ClientID).
			Msg("mqtt session taken over: the broker closed gridbell's connection and took its reconnect at once; another client is probably connecting with gridbell's client id (or the broker restarted in a moment)")
	}
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
	mqttConnected.Set(0)
	mqttLost.Inc()
	if errors.Is(err, io.EOF) { // closed by the broker, not a network fault
		m.lostAt.Store(time.Now().UnixNano())
	}
	m.log.Warn().Err(err).Msg("mqtt connection lost; reconnecting")
}

// onMessage runs on paho's network goroutine (ordered delivery) and waits
// for room in the window: while it waits, paho reads nothing more and the
// broker holds the rest. Acknowledgements travel on another goroutine, so a
// full window drains.
func (m *MQTT) onMessage(_ paho.Client, msg paho.Message) {
	m.took()
	ctx := *m.ctx.Load()
	select {
	case m.window <- struct{}{}:
		m.work <- msg // never waits: work has room for the whole window
	case <-ctx.Done(): // not acknowledged: the broker sends it again
	}
}

// worker handles messages until ctx ends: it takes one, then whatever else
// waits in the window up to mqttBatchEvents, and hands them on together.
// The workers are long-lived, so their stacks have grown to what decoding
// needs once, not per message. Messages in hand when ctx ends are finished
// under hctx (see graceful).
func (m *MQTT) worker(ctx, hctx context.Context) {
	defer m.wg.Done()
	var b mqttBatch
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-m.work:
			b.msgs = append(b.msgs, msg)
		}
		m.fill(&b)
		if m.handle(hctx, &b) == nil {
			for _, msg := range b.msgs {
				msg.Ack()
			}
		}
		for range b.msgs {
			<-m.window
		}
		b.reset()
	}
}

// mqttBatch is what one worker hands on at once.
type mqttBatch struct {
	msgs []paho.Message
	evs  []event.Event
	ends []int // ends[i]: where msgs[i]'s events end in evs
	rejs []mqttReject
	dec  readingDecoder // kept across batches: its chunk serves many messages
}

// mqttReject is a message with rejected content, to keep as dead letters.
type mqttReject struct {
	topic   string
	payload []byte
	err     error
}

func (b *mqttBatch) reset() {
	clear(b.msgs)
	clear(b.evs)
	clear(b.rejs)
	b.msgs, b.evs, b.ends, b.rejs = b.msgs[:0], b.evs[:0], b.ends[:0], b.rejs[:0]
	if cap(b.evs) > 4*mqttBatchEvents {
		b.evs = nil // one huge payload's: let it go
	}
}

// fill decodes b's messages, taking more from the window while it has
// them and b holds fewer than mqttBatchEvents events.
func (m *MQTT) fill(b *mqttBatch) {
	now := time.Now()
	for i := 0; ; i++ {
		if i == len(b.msgs) {
			if len(b.evs) >= mqttBatchEvents {
				return
			}
			select {
			case msg := <-m.work:
				b.msgs = append(b.msgs, msg)
			default:
				return
			}
		}
		b.decode(m, b.msgs[i].Topic(), b.msgs[i].Payload(), now)
	}
}

// decode appends the events of one message to b, and its rejections.
func (b *mqttBatch) decode(m *MQTT, topic string, payload []byte, now time.Time) {
	var err error
	b.evs, err = b.dec.appendMQTT(b.evs, m.cfg.TopicPrefix, topic, payload, now, m.lim)
	if err != nil {
		b.rejs = append(b.rejs, mqttReject{topic, payload, err})
	}
	b.ends = append(b.ends, len(b.evs))
}

// handle keeps the rejections of b's messages, hands its events on and
// copies its readings to Influx. It returns nil once b's messages may be
// acknowledged, or ctx's error.
func (m *MQTT) handle(ctx context.Context, b *mqttBatch) error {
	for _, r := range b.rejs {
		if ok, n := m.rejThr.Allow(); ok {
			m.log.Warn().Str("topic", r.topic).Int("suppressed", n).Msg(r.err.Error())
		}
		if err := retry(ctx, m.log, &m.errThr, "keep dead letter", func() error {
			return m.rejects.keep(ctx, r.topic, r.payload, r.err)
		}); err != nil {
			return err
		}
	}
	return m.handOn(ctx, b)
}

// handOn hands b's events to the Handler and then copies their readings to
// Influx, waiting first while the sink is behind a healthy InfluxDB.
//
// Poison: while the Handler is only unavailable (Temporary errors: the
// rules reloading, the store down or full) the events are offered for as
// long as it takes. If it refuses them poisonTries times while up, they
// are offered message by message, and a message refused poisonTries times
// on its own goes to the dead letters (reason unstorable, with its topic)
// and is acknowledged, so it does not come back for ever.
func (m *MQTT) handOn(ctx context.Context, b *mqttBatch) error {
	evs := b.evs
	if len(evs) == 0 {
		return nil
	}
	if m.sink != nil {
		n := 0
		for i := range evs {
			if evs[i].Reading != nil {
				n++
			}
		}
		if err := m.sink.waitRoom(ctx, n); err != nil {
			return err
		}
		defer m.sink.unreserve(n)
	}
	err := offer(ctx, m.log, &m.errThr, "hand on mqtt events", m.h, evs)
	if err == nil {
		m.accepted.add(evs)
		m.afterHandle(evs)
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	start := 0
	for i, msg := range b.msgs { // find the poison
		part := evs[start:b.ends[i]]
		start = b.ends[i]
		if len(part) == 0 {
			continue
		}
		err := err
		if len(b.msgs) > 1 {
			err = offer(ctx, m.log, &m.errThr, "hand on mqtt events", m.h, part)
		}
		switch {
		case err == nil:
			m.accepted.add(part)
			m.afterHandle(part)
		case ctx.Err() != nil:
			return err
		default:
			m.log.Error().Err(err).Str("topic", msg.Topic()).
				Msg("mqtt message refused by the rules every time: kept as a dead letter and acknowledged")
			poison := unstorable("topic "+msg.Topic(), msg.Payload(), err)
			if err := retry(ctx, m.log, &m.errThr, "keep dead letter", func() error {
				return m.rejects.keep(ctx, msg.Topic(), msg.Payload(), poison)
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// afterHandle counts unknown meters and copies readings to Influx. With a
// Directory, one lookup per reading serves both: the sink is given the
// area. The rules, when they applied the reading here, have already looked
// it up (Reading.Found): then none.
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
			area, ok := r.Area, r.Found == event.LookupKnown
			if r.Found == event.LookupNone {
				area, ok = m.dir.MeterArea(r.Meter)
			}
			if !ok {
				unknownReadings.Inc()
			}
			if m.sink != nil {
				m.sink.add(r, area)
			}
		}
	}
}
