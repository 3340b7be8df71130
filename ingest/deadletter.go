package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/internal/store"
)

// Sources of events, as kept with a dead letter and set on event.Event.
const (
	SourceMQTT   = "mqtt"
	SourceKafka  = "kafka"
	SourceHTTP   = "http"
	SourceReplay = "replay"
)

// HTTP "topics" kept with dead letters from the HTTP endpoints.
const (
	TopicHTTPOMS     = "/api/v1/oms/events"
	TopicHTTPBilling = "/api/v1/billing/events"
)

var migrations = map[string][]string{
	"sqlite": {`CREATE TABLE ingest_dead_letters (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		source TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
		raw BLOB NOT NULL, size INTEGER NOT NULL, received_at INTEGER NOT NULL)`,
		`ALTER TABLE ingest_dead_letters ADD COLUMN elements INTEGER NOT NULL DEFAULT 1`},
	"postgres": {`CREATE TABLE ingest_dead_letters (
		id BIGSERIAL PRIMARY KEY,
		source TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
		raw BYTEA NOT NULL, size INTEGER NOT NULL, received_at BIGINT NOT NULL)`,
		`ALTER TABLE ingest_dead_letters ADD COLUMN elements INTEGER NOT NULL DEFAULT 1`},
}

// DeadLetter is one rejected message kept for inspection and replay.
type DeadLetter struct {
	ID     int64  `json:"id"`
	Source string `json:"source"` // mqtt, kafka, http
	Topic  string `json:"topic"`  // MQTT topic, Kafka topic or HTTP path
	Reason string `json:"reason"` // "<Reason constant>: detail"
	Raw    []byte `json:"raw"`    // cut to Limits.DeadLetterRaw
	Size   int    `json:"size"`   // original size; > len(Raw) when cut
	// Elements is how many elements of the message were rejected. The
	// letter keeps them all in Raw (a JSON array when more than one), not
	// the message's good ones, which were handed on.
	Elements   int       `json:"elements"`
	ReceivedAt time.Time `json:"received_at"`
}

// Truncated reports whether Raw was cut; such a letter cannot be replayed.
func (d DeadLetter) Truncated() bool { return d.Size > len(d.Raw) }

// DeadLetters is the dead-letter table in the store. Safe for concurrent use.
type DeadLetters struct {
	db  *store.DB
	lim Limits

	mu     sync.Mutex // guards routes
	routes Routes

	capMu sync.Mutex // guards what follows
	// count and bytes are the table's letters and raw bytes as this
	// instance last knew them, plus what it has put since: an estimate
	// (Replay, Prune and other instances change the table) that is read
	// again from the table before anything is dropped.
	count, bytes int64
	synced       bool
}

// deadLettersDropped counts dead letters dropped for the caps.
var deadLettersDropped = metrics.Default.Counter("gridbell_ingest_dead_letters_dropped_total",
	"Dead letters dropped, oldest first, to keep the table within ingest.dead_letter_max letters and ingest.dead_letter_max_bytes raw bytes.")

// Routes tells Replay which decoder a dead letter's topic needs. Whoever
// wires the inputs sets it from their config with SetRoutes; until then the
// defaults of docs/interfaces.md §7 apply.
type Routes struct {
	MQTTPrefix   string
	OMSTopic     string
	BillingTopic string
}

// OpenDeadLetters migrates the dead-letter table and returns it.
func OpenDeadLetters(ctx context.Context, db *store.DB, lim Limits) (*DeadLetters, error) {
	lim.Defaults()
	if err := db.Migrate(ctx, "ingest", migrations[db.Driver()]); err != nil {
		return nil, fmt.Errorf("cannot open dead letters: %w", err)
	}
	return &DeadLetters{db: db, lim: lim,
		routes: Routes{MQTTPrefix: "ami", OMSTopic: "oms.outages", BillingTopic: "billing.accounts"}}, nil
}

// SetRoutes sets the topic names Replay decodes by; empty fields are kept.
func (d *DeadLetters) SetRoutes(r Routes) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.MQTTPrefix != "" {
		d.routes.MQTTPrefix = r.MQTTPrefix
	}
	if r.OMSTopic != "" {
		d.routes.OMSTopic = r.OMSTopic
	}
	if r.BillingTopic != "" {
		d.routes.BillingTopic = r.BillingTopic
	}
}

// Put keeps one rejected message, its raw bytes cut to Limits.DeadLetterRaw.
func (d *DeadLetters) Put(ctx context.Context, source, topic, reason string, raw []byte) error {
	return d.put(ctx, source, topic, reason, raw, 1)
}

// put keeps one dead letter of n rejected elements: one INSERT, however
// many elements a message had.
func (d *DeadLetters) put(ctx context.Context, source, topic, reason string, raw []byte, n int) error {
	size := len(raw)
	if len(raw) > d.lim.DeadLetterRaw {
		raw = raw[:d.lim.DeadLetterRaw]
	}
	if raw == nil {
		raw = []byte{}
	}
	_, err := d.db.ExecContext(ctx, `INSERT INTO ingest_dead_letters (source, topic, reason, raw, size, elements, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, source, topic, reason, raw, size, n, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("cannot store dead letter: %w", err)
	}
	return d.cap(ctx, int64(len(raw)))
}

// cap keeps the table within the caps after a letter of kept raw bytes
// was put: when the estimate is over, the table is counted, and the oldest
// letters go until it is a tenth under each cap, so a flood of bad messages
// drops in batches rather than one row an INSERT.
func (d *DeadLetters) cap(ctx context.Context, kept int64) error {
	d.capMu.Lock()
	defer d.capMu.Unlock()
	d.count, d.bytes = d.count+1, d.bytes+kept
	if d.synced && d.count <= int64(d.lim.DeadLetterMax) && d.bytes <= d.lim.DeadLetterMaxBytes {
		return nil
	}
	if err := d.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(LENGTH(raw)), 0) FROM ingest_dead_letters`).
		Scan(&d.count, &d.bytes); err != nil {
		return fmt.Errorf("cannot count dead letters: %w", err)
	}
	d.synced = true
	maxN, maxB := int64(d.lim.DeadLetterMax), d.lim.DeadLetterMaxBytes
	if d.count <= maxN && d.bytes <= maxB {
		return nil
	}
	wantN, wantB := maxN-maxN/10, maxB-maxB/10
	for d.count > wantN || d.bytes > wantB {
		dropped, freed, err := d.dropOldest(ctx, d.count-wantN, d.bytes-wantB)
		if err != nil {
			return err
		}
		if dropped == 0 {
			break
		}
		d.count, d.bytes = d.count-dropped, d.bytes-freed
		deadLettersDropped.Add(float64(dropped))
	}
	return nil
}

// dropOldest deletes the oldest letters, up to 500, until at least n of
// them or b raw bytes are gone, and says how many went and their bytes.
func (d *DeadLetters) dropOldest(ctx context.Context, n, b int64) (dropped, freed int64, err error) {
	rows, err := d.db.QueryContext(ctx, `SELECT id, LENGTH(raw) FROM ingest_dead_letters ORDER BY id LIMIT 500`)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot drop dead letters: %w", err)
	}
	var last int64
	for rows.Next() && (dropped < n || freed < b) {
		var size int64
		if err := rows.Scan(&last, &size); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("cannot drop dead letters: %w", err)
		}
		dropped, freed = dropped+1, freed+size
	}
	rows.Close()
	if dropped == 0 {
		return 0, 0, rows.Err()
	}
	res, err := d.db.ExecContext(ctx, `DELETE FROM ingest_dead_letters WHERE id <= $1`, last)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot drop dead letters: %w", err)
	}
	if got, err := res.RowsAffected(); err == nil && got != dropped {
		dropped = got // another instance dropped some too; freed is then an estimate until the next count
	}
	return dropped, freed, nil
}

// List returns up to limit dead letters, oldest first.
func (d *DeadLetters) List(ctx context.Context, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := d.db.QueryContext(ctx, `SELECT id, source, topic, reason, raw, size, elements, received_at
		FROM ingest_dead_letters ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list dead letters: %w", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var l DeadLetter
		var ms int64
		if err := rows.Scan(&l.ID, &l.Source, &l.Topic, &l.Reason, &l.Raw, &l.Size, &l.Elements, &ms); err != nil {
			return nil, fmt.Errorf("cannot read dead letter: %w", err)
		}
		l.ReceivedAt = time.UnixMilli(ms)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot list dead letters: %w", err)
	}
	return out, nil
}

// Count returns the number of dead letters kept.
func (d *DeadLetters) Count(ctx context.Context) (int, error) {
	var n int
	if err := d.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM ingest_dead_letters`).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count dead letters: %w", err)
	}
	return n, nil
}

// Replay decodes the dead letters ids again (after a fix to the decoder or
// the limits) and hands the ones that now decode whole to h, deleting them
// once h returns nil. Letters that still fail, or were cut, stay. Replayed
// events carry Source "replay"; handling is idempotent, so a replay is
// harmless even when a letter was handled before.
func (d *DeadLetters) Replay(ctx context.Context, ids []int64, h Handler) (replayed int, err error) {
	for _, id := range ids {
		ok, err := d.replayOne(ctx, id, h)
		if err != nil {
			return replayed, err
		}
		if ok {
			replayed++
		}
	}
	return replayed, nil
}

func (d *DeadLetters) replayOne(ctx context.Context, id int64, h Handler) (bool, error) {
	var l DeadLetter
	err := d.db.QueryRowContext(ctx, `SELECT source, topic, raw, size FROM ingest_dead_letters WHERE id = $1`, id).
		Scan(&l.Source, &l.Topic, &l.Raw, &l.Size)
	if err != nil {
		return false, fmt.Errorf("cannot read dead letter %d: %w", id, err)
	}
	if l.Truncated() {
		return false, nil
	}
	evs, err := d.decode(l, time.Now())
	if err != nil {
		return false, nil // still bad: it stays
	}
	for i := range evs {
		evs[i].Source = SourceReplay
	}
	if len(evs) > 0 {
		if err := h.Handle(ctx, evs); err != nil {
			return false, fmt.Errorf("cannot hand on dead letter %d: %w", id, err)
		}
	}
	if _, err := d.db.ExecContext(ctx, `DELETE FROM ingest_dead_letters WHERE id = $1`, id); err != nil {
		return false, fmt.Errorf("cannot delete replayed dead letter %d: %w", id, err)
	}
	return true, nil
}

// decode re-decodes a dead letter with the decoder its source and topic name.
func (d *DeadLetters) decode(l DeadLetter, now time.Time) ([]event.Event, error) {
	d.mu.Lock()
	r := d.routes
	d.mu.Unlock()
	switch {
	case l.Source == SourceMQTT:
		return DecodeMQTT(r.MQTTPrefix, l.Topic, l.Raw, now, d.lim)
	case l.Topic == TopicHTTPOMS || l.Topic == r.OMSTopic:
		return DecodeOMS(l.Raw, now, d.lim)
	case l.Topic == TopicHTTPBilling || l.Topic == r.BillingTopic:
		return DecodeBilling(l.Raw, now, d.lim)
	}
	return nil, errors.New("no decoder for topic " + l.Topic)
}

// rejecter counts rejections and keeps them as dead letters. It is shared by
// the MQTT, Kafka and HTTP inputs.
type rejecter struct {
	dl     *DeadLetters
	source string
}

func rejectedCounter(source, reason string) metrics.Counter {
	return rejectedVec.WithLabelValues(source, reason)
}

// acceptCounts counts one source's accepted events, and those among them
// stamped older than Limits.LateAfter (accepted, marked late).
type acceptCounts struct {
	accepted, late metrics.Counter
}

func newAcceptCounts(source string) acceptCounts {
	return acceptCounts{accepted: acceptedVec.WithLabelValues(source), late: lateVec.WithLabelValues(source)}
}

func (c acceptCounts) add(evs []event.Event) {
	c.accepted.Add(float64(len(evs)))
	for i := range evs {
		if evs[i].Late {
			c.late.Inc()
		}
	}
}

// keep counts every rejection carried by err and keeps the message's
// rejected part as one dead letter. A plain error (not a *DecodeError) is
// one rejection of raw with reason bad_json. However many elements of a
// batch were bad, it is one row: their reasons summed up and their bytes
// together in one JSON array, which replays as a batch.
func (r rejecter) keep(ctx context.Context, topic string, raw []byte, err error) error {
	rejs := Rejections(err)
	if rejs == nil {
		rejs = []Rejection{{Index: -1, Reason: ReasonBadJSON, Detail: err.Error(), Raw: raw}}
	}
	byReason := map[string]int{}
	for _, rj := range rejs {
		byReason[rj.Reason]++
	}
	for reason, n := range byReason {
		rejectedCounter(r.source, reason).Add(float64(n))
	}
	if r.dl == nil {
		return nil
	}
	return r.dl.put(ctx, r.source, topic, letterReason(rejs, byReason), letterRaw(rejs), len(rejs))
}

// letterReason is "<reason>: <detail>" for one rejection; for several,
// "<first reason>: 3 elements rejected (bad_field 2, future 1); first: …".
func letterReason(rejs []Rejection, byReason map[string]int) string {
	first := rejs[0]
	detail := first.Detail
	if first.Index >= 0 {
		detail = fmt.Sprintf("element %d: %s", first.Index, first.Detail)
	}
	if len(rejs) == 1 {
		return first.Reason + ": " + detail
	}
	reasons := make([]string, 0, len(byReason))
	for reason, n := range byReason {
		reasons = append(reasons, fmt.Sprintf("%s %d", reason, n))
	}
	slices.Sort(reasons)
	return fmt.Sprintf("%s: %d elements rejected (%s); first: %s", first.Reason, len(rejs), strings.Join(reasons, ", "), detail)
}

// letterRaw is the rejected bytes: the one element or payload, or a JSON
// array of the rejected elements.
func letterRaw(rejs []Rejection) []byte {
	if len(rejs) == 1 {
		return rejs[0].Raw
	}
	n := 1
	for _, rj := range rejs {
		n += len(rj.Raw) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, rj := range rejs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, rj.Raw...)
	}
	return append(b, ']')
}

// Prune deletes dead letters received before before, batch rows a
// statement, pausing between batches; it returns how many went.
func (d *DeadLetters) Prune(ctx context.Context, before time.Time, batch int) (int64, error) {
	var total int64
	for {
		res, err := d.db.ExecContext(ctx, `DELETE FROM ingest_dead_letters WHERE id IN
			(SELECT id FROM ingest_dead_letters WHERE received_at < $1 LIMIT $2)`, before.UnixMilli(), batch)
		if err != nil {
			return total, fmt.Errorf("cannot prune dead letters: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < int64(batch) {
			return total, nil
		}
		sleep(ctx, 50*time.Millisecond)
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}
