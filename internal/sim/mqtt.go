package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/secret"
)

// ackTimeout bounds the wait for one batch of QoS 1 acknowledgements.
const ackTimeout = 30 * time.Second

// message is one MQTT publication.
type message struct {
	topic   string
	payload []byte
}

// jsonMessage encodes v for topic; the payload types always encode.
func jsonMessage(topic string, v any) message {
	b, _ := json.Marshal(v)
	return message{topic: topic, payload: b}
}

// dial connects to broker, retrying every second until it answers or ctx is
// done: under `make run` gridbell's embedded broker may still be starting.
func dial(ctx context.Context, broker string, log zerolog.Logger) (mqtt.Client, error) {
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	opts := mqtt.NewClientOptions().AddBroker(broker).
		SetClientID("gridbell-sim-" + hex.EncodeToString(id)).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second)
	c := mqtt.NewClient(opts)
	if u, err := url.Parse(broker); err == nil {
		broker = u.Redacted() // user:password@ stays out of the log
	}
	for attempt := 1; ; attempt++ {
		t := c.Connect()
		t.WaitTimeout(10 * time.Second)
		if t.Error() == nil && c.IsConnectionOpen() {
			log.Info().Str("broker", secret.MaskURL(broker)).Msg("connected to MQTT broker")
			return c, nil
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Warn().Err(t.Error()).Str("broker", secret.MaskURL(broker)).Int("attempt", attempt).Msg("MQTT broker not reachable yet, retrying")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// publish sends msgs with QoS 1 in order and waits for every acknowledgement.
func publish(c mqtt.Client, msgs []message) error {
	toks := make([]mqtt.Token, len(msgs))
	for i, m := range msgs {
		toks[i] = c.Publish(m.topic, 1, false, m.payload)
	}
	var errs []error
	for i, t := range toks {
		if !t.WaitTimeout(ackTimeout) {
			errs = append(errs, fmt.Errorf("cannot publish to %s: no acknowledgement within %s", msgs[i].topic, ackTimeout))
		} else if err := t.Error(); err != nil {
			errs = append(errs, fmt.Errorf("cannot publish to %s: %w", msgs[i].topic, err))
		}
		if len(errs) > 3 {
			break // one broken connection fails them all; a few say enough
		}
	}
	return errors.Join(errs...)
}
