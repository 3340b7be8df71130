package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/gridbell/gridbell/internal/event"
)

// Distributed mode (docs/deploy.md): every instance takes a share of MQTT
// (and of HTTP and the OMS and billing topics) and forwards the events to
// the meter topic; the one instance running the rules consumes it from the
// offsets it stored with its state (MeterConsumer). An input is acked only
// after Kafka acked the forwarded records, so a dead instance loses nothing.

// fwdMaxEvents bounds the events in one forwarded record (Kafka's default
// message limit is 1 MB; a reading is about 200 bytes of JSON).
const fwdMaxEvents = 2000

// DefaultMeterPartitions is how many partitions gridbell gives the meter
// topic when it creates it.
const DefaultMeterPartitions = 12

// Forwarder is the ingest Handler of distributed mode: it writes events to
// the meter topic, keyed by concentrator (Key), and returns once every
// record is acknowledged by all in-sync replicas.
type Forwarder struct {
	w *kafka.Writer
}

// NewForwarder returns a Forwarder producing to topic.
func NewForwarder(cfg KafkaConfig, topic string) (*Forwarder, error) {
	d, err := kafkaDialer(cfg)
	if err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        topic,
		Balancer:     &kafka.Murmur2Balancer{}, // as Kafka's own clients: a key keeps its partition
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond, // concurrent inputs share a produce request
		BatchSize:    1000,
		BatchBytes:   16 << 20,
		MaxAttempts:  3,
		Transport: &kafka.Transport{
			Dial:     (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLS:      d.TLS,
			SASL:     d.SASLMechanism,
			ClientID: "gridbell-forwarder",
		},
	}
	return &Forwarder{w: w}, nil
}

// Close flushes and closes the producer.
func (f *Forwarder) Close() error { return f.w.Close() }

// forwardError is a failure to reach Kafka: the input waits and is offered
// again, never dead-lettered for it.
type forwardError struct{ err error }

func (e *forwardError) Error() string   { return "cannot forward to the meter topic: " + e.err.Error() }
func (e *forwardError) Unwrap() error   { return e.err }
func (e *forwardError) Temporary() bool { return true }

// Handle writes evs to the meter topic, one record per key (in their
// order) and returns once all are acknowledged.
func (f *Forwarder) Handle(ctx context.Context, evs []event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	var msgs []kafka.Message
	groups := map[string]int{} // key → index of its open record's events
	var batches [][]event.Event
	var keys []string
	for i := range evs {
		k := f.Key(&evs[i])
		j, ok := groups[k]
		if !ok || len(batches[j]) >= fwdMaxEvents {
			j = len(batches)
			groups[k] = j
			batches, keys = append(batches, nil), append(keys, k)
		}
		batches[j] = append(batches[j], evs[i])
	}
	for j, b := range batches {
		v, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("cannot encode events for the meter topic: %w", err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(keys[j]), Value: v})
	}
	if err := f.w.WriteMessages(ctx, msgs...); err != nil {
		forwardFailures.Inc()
		return &forwardError{err}
	}
	forwardedRecords.Add(float64(len(msgs)))
	forwardedEvents.Add(float64(len(evs)))
	return nil
}

// Key is the meter-topic key of ev, which only the event decides, so a
// meter's events keep one partition and their order whatever the
// instances' registries say (an unknown meter becoming known, a meter
// moving area, a contacts import reaching one instance before another):
// a meter's reading or event is keyed by the concentrator it came through
// ("conc:<id>", as the concentrator's own events are, so a last gasp and
// its meters' events stay in order), or by the meter ("meter:<id>") when
// no concentrator is named. OMS events are keyed by outage, billing
// events by account, forwarded API writes alike.
func (f *Forwarder) Key(ev *event.Event) string {
	switch {
	case ev.Reading != nil:
		return meterKey(ev.Reading.Meter, ev.Reading.Concentrator)
	case ev.Meter != nil:
		return meterKey(ev.Meter.Meter, ev.Meter.Concentrator)
	case ev.Concentrator != nil:
		return "conc:" + ev.Concentrator.Concentrator
	case ev.Outage != nil:
		return "oms:" + ev.Outage.OutageID
	case ev.Billing != nil:
		return "account:" + ev.Billing.Account
	case ev.Command != nil:
		return "command:" + ev.Command.Outage + ev.Command.Phone
	}
	return ""
}

func meterKey(meter, conc string) string {
	if conc != "" {
		return "conc:" + conc
	}
	return "meter:" + meter
}

// EnsureMeterTopic creates topic with partitions partitions when it does
// not exist, and returns how many partitions it has.
func EnsureMeterTopic(ctx context.Context, cfg KafkaConfig, topic string, partitions int) (int, error) {
	d, err := kafkaDialer(cfg)
	if err != nil {
		return 0, err
	}
	var lastErr error
	for _, b := range cfg.Brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			lastErr = err
			continue
		}
		n, err := ensureTopic(conn, d, ctx, topic, partitions)
		conn.Close()
		if err == nil {
			return n, nil
		}
		lastErr = err
	}
	return 0, fmt.Errorf("cannot create or read meter topic %s: %w", topic, lastErr)
}

func ensureTopic(conn *kafka.Conn, d *kafka.Dialer, ctx context.Context, topic string, partitions int) (int, error) {
	// Create first: kafka-go's metadata request (ReadPartitions) asks the
	// broker to create a missing topic, which one with auto-creation on
	// would do with its own default partition count.
	ctrl, err := conn.Controller()
	if err != nil {
		return 0, err
	}
	cc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	brokers, err := conn.Brokers()
	if err != nil {
		return 0, err
	}
	err = cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: min(3, len(brokers))})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return 0, err
	}
	for range 50 {
		if ps, err := conn.ReadPartitions(topic); err == nil && len(ps) > 0 {
			return len(ps), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, errors.New("topic created but its partitions are not visible")
}
