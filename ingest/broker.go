package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
	"go.etcd.io/bbolt"
)

// Broker is the embedded MQTT broker (mochi-mqtt), used when mqtt.brokers is
// empty so that a single gridbell binary can take meter data with nothing
// else installed. With a state file it keeps sessions, subscriptions and
// QoS 1 messages not yet acknowledged in it (bbolt), so a restart of
// gridbell loses none of what the broker had accepted.
type Broker struct {
	srv     *mochi.Server
	tcp     *listeners.TCP
	hook    *authHook
	closing *atomic.Bool // set by Close: clients dropping off is then expected
}

// StartBroker starts an embedded broker listening on listen ("host:port";
// port 0 picks a free one, see Addr), keeping its state in stateFile ("" =
// memory only). With ingest credentials in auth it takes only the clients
// auth names, each in its role (see authHook); without, it accepts every
// client, which MQTTConfig.Validate allows on loopback only.
func StartBroker(listen, stateFile string, auth BrokerAuth, log zerolog.Logger) (*Broker, error) {
	closing := new(atomic.Bool)
	caps := mochi.NewDefaultServerCapabilities()
	// A storm's burst waits here for gridbell's session while gridbell
	// catches up: hold as much of it as MQTT's packet ids allow (mochi's
	// default, 8,192, dropped a 30,600-message power_on burst's tail).
	caps.MaximumInflight = embeddedQueue
	caps.MaximumClientWritesPending = embeddedQueue
	srv := mochi.New(&mochi.Options{
		InlineClient: false,
		Capabilities: caps,
		Logger:       slog.New(zerologHandler{log: log, closing: closing}),
	})
	brokerDropped.Store(&srv.Info.InflightDropped, &srv.Info.MessagesDropped)
	hook := newAuthHook(auth, log)
	hook.srv = srv
	if err := srv.AddHook(hook, nil); err != nil {
		return nil, fmt.Errorf("cannot start embedded mqtt broker: %w", err)
	}
	if stateFile != "" {
		opts := &bolt.Options{Path: stateFile, Options: &bbolt.Options{Timeout: 5 * time.Second}}
		if err := srv.AddHook(&boltHook{Hook: new(bolt.Hook)}, opts); err != nil {
			return nil, fmt.Errorf("cannot open embedded mqtt broker state %s: %w", stateFile, err)
		}
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: listen})
	if err := srv.AddListener(tcp); err != nil {
		srv.Close()
		return nil, fmt.Errorf("cannot start embedded mqtt broker on %s: %w", listen, err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("cannot start embedded mqtt broker: %w", err)
	}
	log.Info().Str("listen", tcp.Address()).Str("state", stateFile).Bool("auth", len(auth.Ingest) > 0).Msg("embedded mqtt broker started")
	return &Broker{srv: srv, tcp: tcp, hook: hook, closing: closing}, nil
}

// Watch has f called on every message the broker takes under the topic
// prefix of its BrokerAuth (all messages without one): MQTT.Traffic, so
// that a subscription taking nothing while there is traffic shows.
func (b *Broker) Watch(f func()) { b.hook.traffic.Store(&f) }

// embeddedQueue is what the embedded broker queues or has in flight for
// one client (gridbell's session) before it drops: MQTT's 16-bit packet
// ids allow no more unacknowledged QoS 1 messages.
const embeddedQueue = 65535

// boltHook mends mochi's bolt storage, which keeps an inflight message's
// packet id only in its key: restored without it, a queued message cannot
// be resent ("missing packet id") and would be lost across a restart.
type boltHook struct{ *bolt.Hook }

// StoredInflightMessages restores the packet ids from the keys
// ("…:<packet id>").
func (h *boltHook) StoredInflightMessages() ([]storage.Message, error) {
	v, err := h.Hook.StoredInflightMessages()
	for i := range v {
		if v[i].PacketID != 0 {
			continue
		}
		id := v[i].ID[strings.LastIndexByte(v[i].ID, ':')+1:]
		if n, perr := strconv.ParseUint(id, 10, 16); perr == nil {
			v[i].PacketID = uint16(n)
		}
	}
	return v, err
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() string { return b.tcp.Address() }

// closeWait caps how long Close waits for its clients to detach.
const closeWait = 3 * time.Second

// Close stops the broker and disconnects its clients. It stops accepting
// and disconnects every client first, and waits (up to closeWait) until
// their sessions are saved, before it closes the state file: mochi alone
// closes the file while clients are still detaching, and each of them
// then logs an error.
func (b *Broker) Close() error {
	b.closing.Store(true)
	b.tcp.Close(func(id string) {
		for _, cl := range b.srv.Clients.GetByListener(id) {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	})
	detached := make(chan struct{})
	go func() { b.srv.Listeners.ClientsWg.Wait(); close(detached) }()
	select {
	case <-detached:
	case <-time.After(closeWait):
	}
	return b.srv.Close()
}

// zerologHandler passes mochi's slog warnings and errors to zerolog; its
// info lines (one per client connect) stay out of the log, and so do the
// connections it reports closed while the broker is closing.
type zerologHandler struct {
	log     zerolog.Logger
	attrs   []slog.Attr
	closing *atomic.Bool
}

func (h zerologHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h zerologHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "failed to get data" && hasAttr(r, "error", "key not found") {
		return nil // a new state file has no system info yet: not an error
	}
	if h.closing.Load() && closedConn(r) {
		return nil
	}
	ev := h.log.Warn()
	if r.Level >= slog.LevelError {
		ev = h.log.Error()
	}
	for _, a := range h.attrs {
		ev = ev.Str(a.Key, a.Value.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		ev = ev.Str(a.Key, a.Value.String())
		return true
	})
	ev.Msg(r.Message)
	return nil
}

// closedConn reports whether r is about a connection that ended because it
// was closed (by Close, or by the client as it saw the broker go).
func closedConn(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "error" {
			found = errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
				errors.Is(err, packets.ErrServerShuttingDown) || errors.Is(err, mochi.ErrConnectionClosed)
		}
		return !found
	})
	return found
}

func hasAttr(r slog.Record, key, value string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key && a.Value.String() == value
		return !found
	})
	return found
}

func (h zerologHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return zerologHandler{log: h.log, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...), closing: h.closing}
}

func (h zerologHandler) WithGroup(string) slog.Handler { return h }
