package ingest

import (
	"context"
	"fmt"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// DiscardSession connects once under this input's client id with a clean
// session, and disconnects: the broker drops the persistent session kept
// for that client id, with its subscriptions and queued messages, and
// queues nothing more for it. Distributed mode calls it on the session of
// a dead instance once another instance has drained it (Run under the dead
// instance's client id): a $share member that never comes back would
// otherwise keep its share of the messages queued forever.
func (m *MQTT) DiscardSession(ctx context.Context) error {
	opts, err := m.options()
	if err != nil {
		return err
	}
	opts.SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOnConnectHandler(nil).
		SetConnectionLostHandler(nil).
		SetConnectionNotificationHandler(nil).
		SetDefaultPublishHandler(func(paho.Client, paho.Message) {})
	c := paho.NewClient(opts)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("cannot discard mqtt session %s: connect timed out", m.cfg.ClientID)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("cannot discard mqtt session %s: %w", m.cfg.ClientID, err)
	}
	c.Disconnect(250)
	return nil
}
