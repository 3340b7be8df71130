package notify

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// The intent log. A storm's window closing emits hundreds of thousands of
// intents in one rules transaction: as rows of notify_intents (three
// B-trees each) their insert was 6.5 of the 8.9 s the rules held that
// transaction, on SQLite and on PostgreSQL alike. A bulk Enqueue
// (bulkFrom intents or more) writes them instead as a few compact rows of
// notify_intent_log, logChunk intents each, in the same transaction, so
// they are as durable as before at a fraction of the cost. The
// dispatcher then unpacks one log row a step into notify_intents (unpack),
// in the order they were logged, in a transaction that also deletes the
// row: an intent is in the log or in the table, never lost between. An
// intent's key is checked against the table when it is unpacked, as it
// was when inserted directly.
const (
	bulkFrom = 1024  // intents in one Enqueue from which they are logged
	logChunk = 16384 // intents a log row holds at most
)

// logFormat1 opens every log row's data.
const logFormat1 = 1

// Flags of an encoded intent: which of its strings equal the previous
// intent's (the rules emit an outage's intents together, so the kind, grid,
// ref and vars mostly repeat).
const (
	sameKind = 1 << iota
	sameGrid
	sameTo
	sameRef
	sameVars
	sameAccount
	flagsAll = sameKind | sameGrid | sameTo | sameRef | sameVars | sameAccount
)

// logIntents writes intents to the log in tx, logChunk a row.
func (o *Outbox) logIntents(ctx context.Context, tx *sql.Tx, intents []event.Intent, now time.Time) error {
	for len(intents) > 0 {
		at := o.logAt(now)
		n := min(logChunk, len(intents))
		data, err := encodeIntentLog(intents[:n], now)
		if err != nil {
			return err
		}
		id, err := logID()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO notify_intent_log (id, at, n, data) VALUES ($1, $2, $3, $4)`,
			id, at, n, data); err != nil {
			return fmt.Errorf("cannot log %d intents: %w", n, err)
		}
		intents = intents[n:]
	}
	o.logged.Store(true)
	return nil
}

// logAt returns the time a log row is stamped with: now, but later than
// any row this process logged before, so rows unpack in the order logged
// (a fake or coarse clock repeats itself).
func (o *Outbox) logAt(now time.Time) int64 {
	for {
		last := o.lastLogAt.Load()
		at := max(now.UnixNano(), last+1)
		if o.lastLogAt.CompareAndSwap(last, at) {
			return at
		}
	}
}

// logID returns a random id: rows are ordered by their time, then id, and
// two instances (or a former rules leader) may log at once.
func logID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// encodeIntentLog encodes intents as one log row's data. Each intent is a
// flags byte (sameKind…), its key as the length it shares with the
// previous key and the rest, the strings that differ from the previous
// intent's as length and bytes, its priority, and its not-before and
// creation times as differences from the previous intent's.
func encodeIntentLog(intents []event.Intent, now time.Time) ([]byte, error) {
	b := make([]byte, 0, 1+48*len(intents))
	b = append(b, logFormat1)
	var prev intentRec
	enc := recEncoder{now: now}
	for _, in := range intents {
		r, err := enc.rec(in)
		if err != nil {
			return nil, err
		}
		b = appendIntentRec(b, &prev, &r)
		prev = r
	}
	return b, nil
}

func appendIntentRec(b []byte, prev, r *intentRec) []byte {
	var flags byte
	for i, same := range [...]bool{r.kind == prev.kind, r.grid == prev.grid, r.to == prev.to, r.ref == prev.ref,
		r.vars == prev.vars, r.account == prev.account} {
		if same {
			flags |= 1 << i
		}
	}
	b = append(b, flags)
	shared := 0
	for shared < len(r.key) && shared < len(prev.key) && r.key[shared] == prev.key[shared] {
		shared++
	}
	b = binary.AppendUvarint(b, uint64(shared))
	b = appendString(b, r.key[shared:])
	for i, s := range [...]string{r.kind, r.grid, r.to, r.ref, r.vars, r.account} {
		if flags&(1<<i) == 0 {
			b = appendString(b, s)
		}
	}
	b = binary.AppendUvarint(b, uint64(uint32(r.prio)))
	b = binary.AppendVarint(b, r.notBefore-prev.notBefore)
	return binary.AppendVarint(b, r.created-prev.created)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorruptLog = errors.New("corrupt intent log row")

// decodeIntentLog returns the intents of one log row's data.
func decodeIntentLog(data []byte) ([]intentRec, error) {
	if len(data) == 0 || data[0] != logFormat1 {
		return nil, errCorruptLog
	}
	d := logDecoder{b: data[1:]}
	var recs []intentRec
	var prev intentRec
	for len(d.b) > 0 {
		flags := d.b[0]
		d.b = d.b[1:]
		if flags&^flagsAll != 0 {
			return nil, errCorruptLog
		}
		shared := d.uvarint()
		if d.err != nil || shared > uint64(len(prev.key)) {
			return nil, errCorruptLog
		}
		r := prev
		r.key = prev.key[:shared] + d.string()
		for i, p := range [...]*string{&r.kind, &r.grid, &r.to, &r.ref, &r.vars, &r.account} {
			if flags&(1<<i) == 0 {
				*p = d.string()
			}
		}
		prio := d.uvarint()
		r.prio = int32(uint32(prio))
		r.notBefore = prev.notBefore + d.varint()
		r.created = prev.created + d.varint()
		if d.err != nil || prio > 0xffffffff || r.key == "" {
			return nil, errCorruptLog
		}
		recs = append(recs, r)
		prev = r
	}
	return recs, nil
}

// logDecoder reads a log row's fields; the first fault sticks in err.
type logDecoder struct {
	b   []byte
	err error
}

func (d *logDecoder) uvarint() uint64 { return readVarint(d, binary.Uvarint) }
func (d *logDecoder) varint() int64   { return readVarint(d, binary.Varint) }

// readVarint reads one number with read (binary.Uvarint or binary.Varint).
func readVarint[T uint64 | int64](d *logDecoder, read func([]byte) (T, int)) T {
	v, k := read(d.b)
	if k <= 0 {
		d.err, d.b = errCorruptLog, nil
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *logDecoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err, d.b = errCorruptLog, nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// unpack moves the oldest log row's intents into notify_intents and
// deletes the row, in one transaction; it returns how many intents the row
// held (0: the log is empty, or another instance is unpacking). A row that
// cannot be decoded is left where it is and reported: nothing is dropped.
func (o *Outbox) unpack(ctx context.Context) (int, error) {
	// Whether to look is a hint (Outbox.logged): set by a bulk Enqueue here,
	// and, for another instance's, by the dispatcher's once-a-second
	// refreshDepth and its idle look (untilDue); cleared when the log reads
	// empty. A row logged as it is cleared waits for the next of those, a
	// second at most. Without the hint every step read the log.
	if !o.logged.Load() {
		return 0, nil
	}
	switch ok, err := o.logHasRows(ctx); {
	case err != nil:
		return 0, err
	case !ok:
		o.logged.Store(false)
		return 0, nil // a cheap read, no write transaction
	}
	tx, err := o.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot unpack logged intents: %w", err)
	}
	defer tx.Rollback()
	if ok, err := o.db.TryLockTx(ctx, tx.Tx, "notify_unpack"); err != nil || !ok {
		return 0, err
	}
	var id string
	var at int64
	var data []byte
	err = tx.QueryRowContext(ctx, `SELECT id, at, data FROM notify_intent_log WHERE n >= 0 ORDER BY at, id LIMIT 1`).Scan(&id, &at, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read the intent log: %w", err)
	}
	recs, err := decodeIntentLog(data)
	if err != nil {
		// Kept for an operator, out of the way of the rows after it: a
		// negative n marks a row that cannot be unpacked.
		if _, uerr := tx.ExecContext(ctx, `UPDATE notify_intent_log SET n = -n - 1 WHERE id = $1`, id); uerr == nil {
			uerr = tx.Commit()
		}
		logCorrupt.Inc()
		return 0, fmt.Errorf("cannot unpack logged intents %s (kept in notify_intent_log with a negative n): %w", id, err)
	}
	if err := insertRecs(ctx, tx.Tx, o.db.Postgres(), recs, at); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM notify_intent_log WHERE id = $1`, id); err != nil {
		return 0, fmt.Errorf("cannot unpack logged intents: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("cannot commit unpacked intents: %w", err)
	}
	if err := o.analyzeAfterBulk(ctx, len(recs)); err != nil {
		o.log.Warn().Err(err).Msg("outbox statistics not refreshed")
	}
	return len(recs), nil
}

// logHasRows reports whether the intent log holds a row to unpack: one
// cheap read, no write transaction.
func (o *Outbox) logHasRows(ctx context.Context) (bool, error) {
	var one int
	switch err := o.db.QueryRowContext(ctx, `SELECT 1 FROM notify_intent_log WHERE n >= 0 LIMIT 1`).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("cannot read the intent log: %w", err)
	}
	return true, nil
}

// Unpack moves every logged intent into notify_intents and returns how
// many it moved. The dispatcher does this a row a step (Run); Unpack is
// for a caller without a dispatcher (a benchmark, a one-shot tool).
func (o *Outbox) Unpack(ctx context.Context) (int, error) {
	o.logged.Store(true)
	total := 0
	for {
		n, err := o.unpack(ctx)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// CountIntents counts the intents of kind in the outbox, in one snapshot:
// those in notify_intents and those still logged (notify_intent_log, not
// yet unpacked). Both are committed with the decisions that made them; the
// dispatcher unpacks the log a row a step. A logged intent whose key is
// stored already counts twice until it is unpacked (then it is dropped).
// For benchmarks and operators' tools; it decodes every logged row.
func CountIntents(ctx context.Context, db *store.DB, kind event.Kind) (int, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if db.Postgres() {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return 0, fmt.Errorf("cannot count intents: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_intents WHERE kind = $1`, string(kind)).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count intents: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT data FROM notify_intent_log WHERE n >= 0`)
	if err != nil {
		return 0, fmt.Errorf("cannot count logged intents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return 0, fmt.Errorf("cannot count logged intents: %w", err)
		}
		recs, err := decodeIntentLog(data)
		if err != nil {
			continue // kept for an operator; unpack reports it
		}
		for _, r := range recs {
			if r.kind == string(kind) {
				n++
			}
		}
	}
	return n, rows.Err()
}
