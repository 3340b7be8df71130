package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/gridbell/gridbell/internal/event"
)

// OffsetHandler applies events consumed from the meter topic and commits
// the offsets with their effects (the rules engine's HandleAt).
type OffsetHandler interface {
	HandleAt(ctx context.Context, evs []event.Event, offsets map[int32]int64) error
}

// meterBatch bounds the events one HandleAt carries; meterReadAhead the
// records read ahead of the rules, and meterReadAheadBytes their size (a
// record holds up to fwdMaxEvents events: 5,000 full ones would be 2 GB).
const (
	meterBatch          = 5000
	meterReadAhead      = 5000
	meterReadAheadBytes = 64 << 20
)

// readBudget bounds the bytes of the records read ahead.
type readBudget struct {
	mu    sync.Mutex
	left  int
	freed chan struct{} // closed when bytes are given back
}

func newReadBudget(n int) *readBudget { return &readBudget{left: n, freed: make(chan struct{})} }

// take waits until n bytes are free, or ctx ends (false). A record larger
// than the whole budget is let through once the budget is all free.
func (b *readBudget) take(ctx context.Context, n int) bool {
	for {
		b.mu.Lock()
		if b.left >= n || b.left == meterReadAheadBytes {
			b.left -= n
			b.mu.Unlock()
			return true
		}
		ch := b.freed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

// give returns n bytes.
func (b *readBudget) give(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.left += n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// MeterConsumer reads every partition of the meter topic, from the offsets
// the rules stored with their state, and hands the events on in batches.
// It is run by the one instance running the rules; Kafka's committed
// offsets are not used.
type MeterConsumer struct {
	cfg   KafkaConfig
	topic string
	h     OffsetHandler
	dl    *DeadLetters
	log   zerolog.Logger
}

// NewMeterConsumer returns a consumer of topic handing events to h.
func NewMeterConsumer(cfg KafkaConfig, topic string, h OffsetHandler, dl *DeadLetters, log zerolog.Logger) *MeterConsumer {
	return &MeterConsumer{cfg: cfg, topic: topic, h: h, dl: dl, log: log}
}

type meterRecord struct {
	partition int32
	next      int64 // the offset after this record
	size      int   // its bytes, taken from the read-ahead budget
	evs       []event.Event
}

// Run consumes partitions 0..partitions-1, each from start[p] (the first
// offset when absent), until ctx ends or the handler fails; the caller then
// reads the stored offsets again and starts a new Run, so input the failed
// batch held is read again.
func (c *MeterConsumer) Run(ctx context.Context, partitions int, start map[int32]int64) error {
	d, err := kafkaDialer(c.cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Records read ahead while the rules commit: a storm's records carry an
	// event or two each, so a short queue would make a commit of each few
	// (bench/storm -cluster-forwarders: 64 events a commit with 4 a
	// partition, about 4,900 with this).
	in := make(chan meterRecord, meterReadAhead)
	budget := newReadBudget(meterReadAheadBytes)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for p := range int32(partitions) {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: c.cfg.Brokers, Topic: c.topic, Partition: int(p), Dialer: d,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond,
			ErrorLogger: kafka.LoggerFunc(func(f string, a ...any) {
				c.log.Debug().Msgf("meter topic: "+f, a...)
			}),
		})
		off, ok := start[p]
		if !ok {
			off = kafka.FirstOffset
		}
		if err := r.SetOffset(off); err != nil {
			r.Close()
			return fmt.Errorf("cannot seek meter topic partition %d to %d: %w", p, off, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			c.read(ctx, p, r, in, budget)
		}()
	}
	for {
		var first meterRecord
		select {
		case <-ctx.Done():
			return nil
		case first = <-in:
		}
		evs, offs, size := first.evs, map[int32]int64{first.partition: first.next}, first.size
	gather:
		for len(evs) < meterBatch {
			select {
			case r := <-in:
				evs = append(evs, r.evs...)
				offs[r.partition] = r.next
				size += r.size
			default:
				break gather
			}
		}
		err := c.h.HandleAt(ctx, evs, offs)
		budget.give(size)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cannot apply %d meter-topic events: %w", len(evs), err)
		}
		meterConsumed.Add(float64(len(evs)))
	}
}

// read fetches partition p's records into in, within the read-ahead
// budget, until ctx ends.
func (c *MeterConsumer) read(ctx context.Context, p int32, r *kafka.Reader, in chan<- meterRecord, budget *readBudget) {
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn().Err(err).Int32("partition", p).Msg("cannot read the meter topic, retrying")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		var evs []event.Event
		if err := json.Unmarshal(m.Value, &evs); err != nil {
			meterBadRecords.Inc()
			topic := c.topic + "/" + strconv.Itoa(int(p)) + "@" + strconv.FormatInt(m.Offset, 10)
			c.log.Error().Err(err).Str("record", topic).Msg("meter-topic record cannot be decoded; kept as a dead letter")
			if c.dl != nil {
				if derr := c.dl.Put(ctx, SourceKafka, topic, "cluster_record: "+err.Error(), m.Value); derr != nil && !errors.Is(derr, context.Canceled) {
					c.log.Error().Err(derr).Msg("cannot keep the bad meter-topic record")
				}
			}
			evs = nil // its offset still moves on
		}
		if !budget.take(ctx, len(m.Value)) {
			return
		}
		select {
		case in <- meterRecord{partition: p, next: m.Offset + 1, size: len(m.Value), evs: evs}:
		case <-ctx.Done():
			return
		}
	}
}
