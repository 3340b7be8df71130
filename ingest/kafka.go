package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/logging"
)

// kafkaBatch bounds how many messages one Handle call takes; kafkaLinger is
// how long to wait for more once one has arrived.
const (
	kafkaBatch  = 500
	kafkaLinger = 5 * time.Millisecond
)

// kafkaReader is the part of kafka-go's Reader Kafka uses.
type kafkaReader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

// Kafka takes OMS outage and billing events from Kafka (docs/interfaces.md §2) as one
// consumer group over both topics. Offsets are committed only after the
// Handler stored the events (at least once); a new group starts at the
// earliest retained offset. Replays are harmless because the rules are
// idempotent: an outage's newest updated_at wins, and billing events carry
// stable ids.
type Kafka struct {
	cfg KafkaConfig
	lim Limits
	h   Handler
	dl  *DeadLetters
	log zerolog.Logger

	ready    atomic.Bool
	lag      *lagTracker
	rejects  rejecter
	accepted acceptCounts
	errThr   logging.Throttle
	rejThr   logging.Throttle
}

// NewKafka returns a Kafka input; Run starts it.
func NewKafka(cfg KafkaConfig, lim Limits, h Handler, dl *DeadLetters, log zerolog.Logger) *Kafka {
	cfg.Defaults()
	lim.Defaults()
	return &Kafka{cfg: cfg, lim: lim, h: h, dl: dl, log: log, lag: newLagTracker(cfg.OMSTopic, cfg.BillingTopic),
		rejects: rejecter{dl: dl, source: SourceKafka}, accepted: newAcceptCounts(SourceKafka),
		errThr: logging.Throttle{Period: 10 * time.Second}, rejThr: logging.Throttle{Period: 10 * time.Second}}
}

// Ready reports whether the consumer group is joined and partitions assigned.
func (k *Kafka) Ready() bool { return k.ready.Load() }

// Run consumes until ctx ends. Messages fetched but not yet committed when it
// ends are delivered again to the group.
func (k *Kafka) Run(ctx context.Context) error {
	if len(k.cfg.Brokers) == 0 {
		return errors.New("kafka.brokers is empty: kafka is off")
	}
	dialer, err := k.dialer()
	if err != nil {
		return err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        k.cfg.Brokers,
		GroupID:        k.cfg.Group,
		GroupTopics:    []string{k.cfg.OMSTopic, k.cfg.BillingTopic},
		StartOffset:    kafka.FirstOffset,
		Dialer:         dialer,
		CommitInterval: 0, // synchronous: CommitMessages returns once committed
		MaxWait:        500 * time.Millisecond,
		MaxBytes:       max(10<<20, k.lim.MaxPayload+1<<10),
		Logger:         kafka.LoggerFunc(k.watchGroup),
		ErrorLogger:    kafka.LoggerFunc(k.logError),
	})
	defer k.ready.Store(false)
	err = k.run(ctx, r)
	if cerr := r.Close(); err == nil && cerr != nil && ctx.Err() == nil {
		err = fmt.Errorf("cannot close kafka reader: %w", cerr)
	}
	return err
}

func (k *Kafka) run(ctx context.Context, r kafkaReader) error {
	hctx, stop := graceful(ctx)
	defer stop()
	for {
		msgs, err := k.fetch(ctx, r)
		if ctx.Err() != nil && len(msgs) == 0 {
			return nil
		}
		if err != nil {
			if ok, n := k.errThr.Allow(); ok {
				k.log.Error().Err(err).Int("suppressed", n).Msg("cannot fetch from kafka, retrying")
			}
			sleep(ctx, time.Second)
			continue
		}
		// Fetched messages are finished under hctx, so a stop commits them.
		if err := k.process(hctx, msgs); err != nil {
			return nil // not committed: delivered again
		}
		if err := retry(hctx, k.log, &k.errThr, "commit kafka offsets", func() error {
			return r.CommitMessages(hctx, msgs...)
		}); err != nil {
			return nil
		}
		for _, m := range msgs { // in offset order per partition: the last one stands
			k.lag.set(m.Topic, m.Partition, m.HighWaterMark-m.Offset-1)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// fetch waits for one message, then takes whatever else arrives within
// kafkaLinger, up to kafkaBatch, so a burst is stored in one Handle call.
func (k *Kafka) fetch(ctx context.Context, r kafkaReader) ([]kafka.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	msgs := []kafka.Message{m}
	lctx, cancel := context.WithTimeout(ctx, kafkaLinger)
	defer cancel()
	for len(msgs) < kafkaBatch {
		m, err := r.FetchMessage(lctx)
		if err != nil {
			break // linger over; a message not taken stays in the reader
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// process decodes msgs, keeps their rejections and hands their events on.
// It returns an error only when ctx ended first. Events the handler keeps
// refusing are offered message by message, and a message refused
// poisonTries times alone goes to the dead letters with its partition and
// offset, so its partition moves on.
func (k *Kafka) process(ctx context.Context, msgs []kafka.Message) error {
	parts := make([][]event.Event, len(msgs))
	var evs []event.Event
	now := time.Now()
	for i, m := range msgs {
		decode := DecodeBilling
		if m.Topic == k.cfg.OMSTopic {
			decode = DecodeOMS
		}
		got, err := decode(m.Value, now, k.lim)
		if err != nil {
			if ok, n := k.rejThr.Allow(); ok {
				k.log.Warn().Str("topic", m.Topic).Int("partition", m.Partition).Int64("offset", m.Offset).
					Int("suppressed", n).Msg(err.Error())
			}
			if err := k.reject(ctx, m, err); err != nil {
				return err
			}
		}
		for i := range got {
			got[i].Source = SourceKafka
		}
		parts[i] = got
		evs = append(evs, got...)
	}
	if len(evs) == 0 {
		return nil
	}
	err := offer(ctx, k.log, &k.errThr, "hand on kafka events", k.h, evs)
	if err == nil {
		k.accepted.add(evs)
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	for i, m := range msgs { // find the poison
		if len(parts[i]) == 0 {
			continue
		}
		err := err
		if len(msgs) > 1 {
			err = offer(ctx, k.log, &k.errThr, "hand on kafka events", k.h, parts[i])
		}
		switch {
		case err == nil:
			k.accepted.add(parts[i])
		case ctx.Err() != nil:
			return err
		default:
			where := fmt.Sprintf("partition %d offset %d", m.Partition, m.Offset)
			k.log.Error().Err(err).Str("topic", m.Topic).Int("partition", m.Partition).Int64("offset", m.Offset).
				Msg("kafka message refused by the rules every time: kept as a dead letter; the partition moves on")
			if err := k.reject(ctx, m, unstorable(where, m.Value, err)); err != nil {
				return err
			}
		}
	}
	return nil
}

// reject keeps m as a dead letter for err, retrying while the store fails.
func (k *Kafka) reject(ctx context.Context, m kafka.Message, err error) error {
	return retry(ctx, k.log, &k.errThr, "keep dead letter", func() error {
		return k.rejects.keep(ctx, m.Topic, m.Value, err)
	})
}

// watchGroup follows kafka-go's informational log for group membership:
// kafka-go has no other way to tell that the group was joined.
func (k *Kafka) watchGroup(msg string, args ...any) {
	switch {
	case strings.HasPrefix(msg, "subscribed to topics and partitions"):
		if !k.ready.Swap(true) {
			k.log.Info().Str("group", k.cfg.Group).Msg("kafka consumer group joined")
		}
	case strings.HasPrefix(msg, "stopped commit for group"):
		k.ready.Store(false) // the generation ended; a rebalance follows
		k.lag.reset()
	}
}

// logError logs kafka-go's errors as warnings, but a read that timed out
// (an idle partition: nothing arrived within the fetch's wait) only at
// debug level: it is retried at once and says nothing is wrong.
func (k *Kafka) logError(msg string, args ...any) {
	if idleTimeout(args) {
		k.log.Debug().Msg(fmt.Sprintf(msg, args...))
		return
	}
	if ok, n := k.errThr.Allow(); ok {
		k.log.Warn().Int("suppressed", n).Msg(fmt.Sprintf(msg, args...))
	}
}

// idleTimeout reports whether one of a log line's args is a timeout error.
func idleTimeout(args []any) bool {
	for _, a := range args {
		err, ok := a.(error)
		if !ok {
			continue
		}
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, kafka.RequestTimedOut) || errors.As(err, &ne) && ne.Timeout() {
			return true
		}
	}
	return false
}

func (k *Kafka) dialer() (*kafka.Dialer, error) { return kafkaDialer(k.cfg) }

// kafkaDialer builds the connection settings (TLS, SASL) cfg names.
func kafkaDialer(cfg KafkaConfig) (*kafka.Dialer, error) {
	d := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, ClientID: "gridbell"}
	tlsCfg, err := cfg.TLS.build()
	if err != nil {
		return nil, fmt.Errorf("cannot configure kafka: %w", err)
	}
	d.TLS = tlsCfg
	var mech sasl.Mechanism
	user, pass := cfg.SASL.Username, cfg.SASL.Password.Reveal()
	switch cfg.SASL.Mechanism {
	case "":
	case "plain":
		mech = plain.Mechanism{Username: user, Password: pass}
	case "scram-sha-256":
		mech, err = scram.Mechanism(scram.SHA256, user, pass)
	case "scram-sha-512":
		mech, err = scram.Mechanism(scram.SHA512, user, pass)
	default:
		err = errors.New("unknown mechanism " + cfg.SASL.Mechanism)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot configure kafka sasl: %w", err)
	}
	d.SASLMechanism = mech
	return d, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
