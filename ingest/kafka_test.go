package ingest

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

func kafkaCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "oms.outages", "billing.accounts"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func produce(t *testing.T, c *kfake.Cluster, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func outageRecord(id string, i int) *kgo.Record {
	upd := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute).Format(time.RFC3339)
	return &kgo.Record{Topic: "oms.outages", Key: []byte(id), Value: []byte(fmt.Sprintf(
		`{"outage_id":%q,"kind":"fault","status":"started","areas":["TA-%d"],"updated_at":%q}`, id, i, upd))}
}

func billingRecord(acct string, i int) *kgo.Record {
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second).Format(time.RFC3339)
	return &kgo.Record{Topic: "billing.accounts", Key: []byte(acct), Value: []byte(fmt.Sprintf(
		`{"account":%q,"type":"balance","balance":%d,"at":%q}`, acct, i, at))}
}

type kafkaRun struct {
	k *Kafka
	running
}

func startKafka(t *testing.T, c *kfake.Cluster, group string, h Handler, dl *DeadLetters) *kafkaRun {
	t.Helper()
	cfg := KafkaConfig{Brokers: c.ListenAddrs(), Group: group}
	k := NewKafka(cfg, Limits{}, h, dl, testLog(t))
	return &kafkaRun{k: k, running: goRun(k.Run)}
}

// outageState is what the rules would keep: the newest updated_at per outage.
type outageState struct {
	*recorder
	mu     sync.Mutex
	newest map[string]time.Time
}

func newOutageState() *outageState {
	return &outageState{recorder: newRecorder(), newest: map[string]time.Time{}}
}

func (s *outageState) Handle(ctx context.Context, evs []event.Event) error {
	if err := s.recorder.Handle(ctx, evs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		if o := e.Outage; o != nil && o.UpdatedAt.After(s.newest[o.OutageID]) {
			s.newest[o.OutageID] = o.UpdatedAt
		}
	}
	return nil
}

func (s *outageState) snapshot() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.newest))
	for k, v := range s.newest {
		out[k] = v
	}
	return out
}

func TestKafkaRoundTripAndReplay(t *testing.T) {
	ctx := context.Background()
	c := kafkaCluster(t)
	dl, err := OpenDeadLetters(ctx, storetest.Open(t, "sqlite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 30 {
		recs = append(recs, outageRecord(fmt.Sprintf("OMS-%d", i%10), i), billingRecord(fmt.Sprintf("A%d", i), i))
	}
	recs = append(recs,
		&kgo.Record{Topic: "oms.outages", Key: []byte("bad"), Value: []byte(`{"outage_id":"X","kind":"meteor"}`)},
		&kgo.Record{Topic: "billing.accounts", Key: []byte("bad"), Value: []byte(`not json`)})
	produce(t, c, recs...)

	h := newOutageState()
	h.fails = 1
	run := startKafka(t, c, "gridbell", h, dl)
	waitFor(t, 30*time.Second, "60 events", func() bool { return h.distinct() == 60 })
	if !run.k.Ready() {
		t.Error("not Ready after consuming")
	}
	waitFor(t, 5*time.Second, "2 dead letters", func() bool { n, _ := dl.Count(ctx); return n == 2 })
	letters, _ := dl.List(ctx, 10)
	for _, l := range letters {
		if l.Source != SourceKafka || (l.Topic != "oms.outages" && l.Topic != "billing.accounts") {
			t.Errorf("dead letter %+v", l)
		}
	}
	run.stop(t)
	before := h.snapshot()
	if len(before) != 10 {
		t.Fatalf("state has %d outages, want 10", len(before))
	}

	// A new group starts at offset 0: the Handler sees every event again,
	// and the state it keeps does not change.
	seen := h.total()
	replay := startKafka(t, c, "gridbell-replay", h, nil)
	defer replay.stop(t)
	waitFor(t, 30*time.Second, "the replay", func() bool { return h.total() >= 2*seen })
	if h.distinct() != 60 {
		t.Errorf("distinct events after replay = %d, want 60", h.distinct())
	}
	after := h.snapshot()
	for id, ts := range before {
		if !after[id].Equal(ts) {
			t.Errorf("outage %s newest updated_at %v after replay, was %v", id, after[id], ts)
		}
	}
}

// stopper says stop once it has handled n events.
type stopper struct {
	*recorder
	n    int
	once sync.Once
	stop chan struct{}
}

func (s *stopper) Handle(ctx context.Context, evs []event.Event) error {
	if err := s.recorder.Handle(ctx, evs); err != nil {
		return err
	}
	if s.distinct() >= s.n {
		s.once.Do(func() { close(s.stop) })
	}
	return nil
}

// gridbell stops mid-topic; the next run of the same group picks up where
// the committed offsets say, and no event is lost.
func TestKafkaRestartMidTopic(t *testing.T) {
	const total = 3000
	c := kafkaCluster(t)
	var recs []*kgo.Record
	for i := range total {
		recs = append(recs, billingRecord(fmt.Sprintf("A%d", i), i))
	}
	produce(t, c, recs...)

	h := newRecorder()
	s := &stopper{recorder: h, n: 800, stop: make(chan struct{})}
	run := startKafka(t, c, "gridbell", s, nil)
	select {
	case <-s.stop:
	case <-time.After(30 * time.Second):
		t.Fatal("the first run did not get far enough")
	}
	run.stop(t)
	first := h.distinct()
	if first >= total {
		t.Fatalf("the first run consumed everything (%d); cannot test a restart", first)
	}
	run = startKafka(t, c, "gridbell", h, nil)
	defer run.stop(t)
	waitFor(t, 30*time.Second, "every event after the restart", func() bool { return h.distinct() == total })
	handled := h.total()
	t.Logf("first run %d, total handled %d (duplicates %d)", first, handled, handled-total)
}

// poisonHandler refuses, every time, the events of one outage: an effect
// that can never be stored. Everything else it records.
type poisonHandler struct {
	*recorder
	poison string
}

func (p *poisonHandler) Handle(ctx context.Context, evs []event.Event) error {
	for _, e := range evs {
		if e.Outage != nil && e.Outage.OutageID == p.poison {
			return fmt.Errorf("cannot store outage %s: invalid byte sequence", p.poison)
		}
	}
	return p.recorder.Handle(ctx, evs)
}

// TestKafkaPoisonMessage: a message the rules refuse every time goes to the
// dead letters after a bounded number of tries, with its partition and
// offset, and the messages behind it on its partition are handled. A
// handler that is only unavailable for a while (temporary errors) sends
// nothing to the dead letters.
func TestKafkaPoisonMessage(t *testing.T) {
	ctx := context.Background()
	c := kafkaCluster(t)
	dl, err := OpenDeadLetters(ctx, storetest.Open(t, "sqlite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	h := &poisonHandler{recorder: newRecorder(), poison: "OMS-POISON"}
	h.fails = 7 // unavailable first: retried, not dead-lettered
	rec := func(id string, i int) *kgo.Record {
		r := outageRecord(id, i)
		r.Key = []byte("one-partition")
		return r
	}
	produce(t, c, rec("OMS-1", 1), rec("OMS-POISON", 2), rec("OMS-3", 3))
	run := startKafka(t, c, "poison", h, dl)
	defer run.stop(t)
	waitFor(t, 60*time.Second, "the outage behind the poison", func() bool {
		return h.has("o/OMS-3/" + fmt.Sprint(time.Date(2026, 11, 26, 9, 3, 0, 0, time.UTC).UnixMilli()))
	})
	letters, err := dl.List(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 || !strings.HasPrefix(letters[0].Reason, ReasonUnstorable) || !strings.Contains(letters[0].Reason, "partition") ||
		!strings.Contains(letters[0].Reason, "offset 1") || !strings.Contains(string(letters[0].Raw), "OMS-POISON") {
		t.Fatalf("dead letters %+v, want the poison message, unstorable, with its partition and offset 1", letters)
	}
	if !h.has("o/OMS-1/" + fmt.Sprint(time.Date(2026, 11, 26, 9, 1, 0, 0, time.UTC).UnixMilli())) {
		t.Error("the outage before the poison was not handled")
	}
}

// lagWatcher records the largest consumer lag of topic seen while handling.
type lagWatcher struct {
	*recorder
	topic string
	mu    sync.Mutex
	most  float64
}

func (w *lagWatcher) Handle(ctx context.Context, evs []event.Event) error {
	w.mu.Lock()
	w.most = max(w.most, testutil.ToFloat64(kafkaLag.WithLabelValues(w.topic)))
	w.mu.Unlock()
	return w.recorder.Handle(ctx, evs)
}

// TestKafkaLag: behind a backlog the lag gauge counts what is left after each
// commit, and it is 0 once the topic is consumed.
func TestKafkaLag(t *testing.T) {
	c := kafkaCluster(t)
	const n = 3 * kafkaBatch
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, billingRecord(fmt.Sprintf("A%d", i), i))
	}
	produce(t, c, recs...)
	h := &lagWatcher{recorder: newRecorder(), topic: "billing.accounts"}
	run := startKafka(t, c, "gridbell-lag", h, nil)
	defer run.stop(t)
	waitFor(t, 30*time.Second, "the backlog", func() bool { return h.distinct() == n })
	lag := kafkaLag.WithLabelValues("billing.accounts")
	waitFor(t, 10*time.Second, "lag 0", func() bool { return testutil.ToFloat64(lag) == 0 })
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.most <= 0 || h.most >= n {
		t.Errorf("largest lag seen while consuming %d messages in batches of at most %d = %v, want between", n, kafkaBatch, h.most)
	}
}

// TestKafkaIdleNotWarned: kafka-go's log line for a partition read that
// timed out (an idle partition) is not a warning; other read errors are.
func TestKafkaIdleNotWarned(t *testing.T) {
	var logs lockedBuffer
	k := NewKafka(KafkaConfig{Brokers: []string{"127.0.0.1:1"}}, Limits{}, newRecorder(), nil, zerolog.New(&logs).Level(zerolog.InfoLevel))
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	k.logError("the kafka reader got an unknown error reading partition %d of %s at offset %d: %s", 0, "oms.outages", 7, timeout)
	k.logError("no messages received from kafka within the allocated time for partition %d of %s at offset %d: %v", 1, "oms.outages", 3, kafka.RequestTimedOut)
	k.logError("failed to read from current broker for partition %d of %s at offset %d: %v", 1, "oms.outages", 3, context.DeadlineExceeded)
	if logs.String() != "" {
		t.Errorf("idle partitions logged at info or above:\n%s", logs.String())
	}
	k.logError("failed to read from current broker for partition %d of %s at offset %d: %v", 1, "oms.outages", 3, kafka.NotLeaderForPartition)
	if !strings.Contains(logs.String(), `"level":"warn"`) {
		t.Errorf("a real read error was not warned: %q", logs.String())
	}
}
