package ingest

import (
	"context"
	"fmt"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/rs/zerolog"
)

// Broker is the embedded MQTT broker (mochi-mqtt), used when mqtt.brokers is
// empty so that a single gridbell binary can take meter data with nothing
// else installed. It keeps sessions in memory only: messages queued for a
// persistent session do not survive a restart of gridbell itself.
type Broker struct {
	srv *mochi.Server
	tcp *listeners.TCP
}

// StartBroker starts an embedded broker listening on listen ("host:port";
// port 0 picks a free one, see Addr). It accepts every client: bind it to
// loopback or a trusted network.
func StartBroker(listen string, log zerolog.Logger) (*Broker, error) {
	srv := mochi.New(&mochi.Options{
		InlineClient: false,
		Logger:       slog.New(zerologHandler{log: log}),
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("cannot start embedded mqtt broker: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: listen})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("cannot start embedded mqtt broker on %s: %w", listen, err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("cannot start embedded mqtt broker: %w", err)
	}
	log.Info().Str("listen", tcp.Address()).Msg("embedded mqtt broker started")
	return &Broker{srv: srv, tcp: tcp}, nil
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() string { return b.tcp.Address() }

// Close stops the broker and disconnects its clients.
func (b *Broker) Close() error { return b.srv.Close() }

// zerologHandler passes mochi's slog warnings and errors to zerolog; its
// info lines (one per client connect) stay out of the log.
type zerologHandler struct {
	log   zerolog.Logger
	attrs []slog.Attr
}

func (h zerologHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h zerologHandler) Handle(_ context.Context, r slog.Record) error {
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

func (h zerologHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return zerologHandler{log: h.log, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h zerologHandler) WithGroup(string) slog.Handler { return h }
