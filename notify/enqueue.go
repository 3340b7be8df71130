package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// Enqueue stores intents inside the caller's transaction (nil tx: its own).
// The idempotency key is unique: an intent already stored is ignored.
func (o *Outbox) Enqueue(ctx context.Context, tx *sql.Tx, intents []event.Intent) error {
	if tx == nil {
		own, err := o.begin(ctx)
		if err != nil {
			return fmt.Errorf("cannot enqueue intents: %w", err)
		}
		defer own.Rollback()
		if err := o.enqueue(ctx, own.Tx, intents); err != nil {
			return err
		}
		if err := own.Commit(); err != nil {
			return fmt.Errorf("cannot commit intents: %w", err)
		}
		o.Kick()
		return nil
	}
	if err := o.enqueue(ctx, tx, intents); err != nil {
		return err
	}
	// The caller commits later: the kick makes the dispatcher look every
	// pollEvery for hotFor, and its idle look finds intents committed
	// after that within idlePoll (dispatchLoop).
	o.Kick()
	return nil
}

func (o *Outbox) enqueue(ctx context.Context, tx *sql.Tx, intents []event.Intent) error {
	for _, in := range intents {
		if err := checkIntent(in); err != nil {
			return err
		}
	}
	now := o.clk.Now()
	if len(intents) >= bulkFrom {
		return o.logIntents(ctx, tx, intents, now)
	}
	recs := make([]intentRec, len(intents))
	enc := recEncoder{now: now}
	for i, in := range intents {
		var err error
		if recs[i], err = enc.rec(in); err != nil {
			return err
		}
	}
	return insertRecs(ctx, tx, o.db.Postgres(), recs, now.UnixNano())
}

// intentRec is an intent as its notify_intents row stores it, but for the
// enqueue time and the state.
type intentRec struct {
	key, kind, account, grid, to, ref, vars string
	prio                                    int32
	notBefore, created                      int64 // unix ns
}

// recEncoder turns the intents of one Enqueue into rows; now stands in for
// a zero CreatedAt. The rules give the intents of an area one vars map, so
// the encoding of the last map is kept: a storm's batch encoded the same
// vars half a million times over. Within one call a map cannot change.
type recEncoder struct {
	now     time.Time
	varsOf  uintptr // the vars map last encoded; 0 = none
	encoded string
}

func (e *recEncoder) rec(in event.Intent) (intentRec, error) {
	vars, err := e.vars(in)
	if err != nil {
		return intentRec{}, fmt.Errorf("cannot encode vars of intent %s: %w", in.Key, err)
	}
	c := in.CreatedAt
	if c.IsZero() {
		c = e.now
	}
	return intentRec{key: in.Key, kind: string(in.Kind), account: in.Account, grid: in.Grid, to: in.To, ref: in.Ref,
		vars: vars, prio: int32(in.Priority), notBefore: nanos(in.NotBefore), created: c.UnixNano()}, nil
}

func (e *recEncoder) vars(in event.Intent) (string, error) {
	if len(in.Aliases) > 0 {
		// Aliases ride in the vars column under a key no template uses.
		v := maps.Clone(in.Vars)
		if v == nil {
			v = map[string]string{}
		}
		v[aliasesVar] = strings.Join(in.Aliases, ",")
		return encodeVars(v)
	}
	id := reflect.ValueOf(in.Vars).Pointer()
	if id != 0 && id == e.varsOf {
		return e.encoded, nil
	}
	s, err := encodeVars(in.Vars)
	if err == nil {
		e.varsOf, e.encoded = id, s
	}
	return s, err
}

// insertRecs stores recs as pending intents enqueued at enqueued (unix ns);
// a key already stored is skipped.
func insertRecs(ctx context.Context, tx *sql.Tx, pg bool, recs []intentRec, enqueued int64) error {
	if pg {
		return insertRecsPG(ctx, tx, recs, enqueued)
	}
	return insertRecsSQLite(ctx, tx, recs, enqueued)
}

// encodeVars returns what json.Marshal(vars) does, without reflection when
// no key or value needs escaping (what the rules write): in a storm's
// burst json.Marshal was a tenth of Enqueue.
func encodeVars(vars map[string]string) (string, error) {
	if vars == nil {
		return "null", nil
	}
	var buf [16]string
	keys := buf[:0]
	n := 2
	for k, v := range vars {
		if !plainJSON(k) || !plainJSON(v) {
			b, err := json.Marshal(vars)
			return string(b), err
		}
		keys = append(keys, k)
		n += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, `":"`...)
		b = append(b, vars[k]...)
		b = append(b, '"')
	}
	return string(append(b, '}')), nil
}

// plainJSON reports whether encoding/json writes s between quotes as it is.
func plainJSON(s string) bool {
	high := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		case c >= 0x80:
			high = true
		}
	}
	return !high || utf8.ValidString(s) && !strings.Contains(s, "\u2028") && !strings.Contains(s, "\u2029")
}

const intentCols = 12

// sqliteIntentRows is how many intents one SQLite INSERT carries: more
// rows a statement are faster, up to where the driver's per-statement
// parameter handling costs more than it saves (measured: 32 beats 1, 16
// and 64). The placeholders are "?": the driver looks a "$n" up by name
// in time linear in the statement's parameters. INSERT OR IGNORE, not ON
// CONFLICT (key) DO NOTHING: a statement of many rows that can abort
// keeps a statement journal (a temp file) of every page it changes; one
// that ignores its conflicts cannot abort. The two differ only on NOT
// NULL, which no bound Go string or integer violates.
const sqliteIntentRows = 32

// insertRecsSQLite inserts recs sqliteIntentRows per statement.
func insertRecsSQLite(ctx context.Context, tx *sql.Tx, recs []intentRec, enqueued int64) error {
	restore, err := growCache(ctx, tx, len(recs))
	if err != nil {
		return fmt.Errorf("cannot enqueue intents: %w", err)
	}
	defer restore()
	err = store.ExecBatches(ctx, tx, len(recs), sqliteIntentRows, insertIntentsSQL,
		func(args []any, from, to int) ([]any, error) {
			for _, r := range recs[from:to] {
				args = append(args, r.key, r.kind, r.account, r.grid, r.to, r.ref, r.vars, int(r.prio),
					r.notBefore, r.created, enqueued, StatusPending)
			}
			return args, nil
		})
	if err != nil {
		return fmt.Errorf("cannot enqueue intents: %w", err)
	}
	return nil
}

// Page cache for a bulk Enqueue on SQLite. Every page an insert dirties
// stays in the cache until the commit, or SQLite spills it to the WAL in
// the middle of the transaction and reads it back for the next insert in
// that page: with the default 2 MiB, 460,000 intents (a storm's burst)
// spent a third of their time doing that. Keys are random, so in a big
// table each intent can dirty a key-index page of its own (4 KiB).
const (
	bulkCacheFrom      = 1024      // intents in one call from which the cache grows
	bulkCachePerIntent = 4 << 10   // bytes
	bulkCacheMax       = 128 << 20 // bytes
)

// growCache enlarges the page cache of tx's connection for n intents and
// returns what puts the connection's own size back. The smaller size
// takes effect as pages come clean: dirty ones stay until the commit.
func growCache(ctx context.Context, tx *sql.Tx, n int) (restore func(), err error) {
	if n < bulkCacheFrom {
		return func() {}, nil
	}
	var was int64
	if err := tx.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&was); err != nil {
		return nil, err
	}
	want := -int64(min(n*bulkCachePerIntent, bulkCacheMax) >> 10) // negative: KiB
	// was is in KiB when negative, else in pages (4 KiB by default).
	if was <= want || was > -want/4 {
		return func() {}, nil
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA cache_size = %d`, want)); err != nil {
		return nil, err
	}
	return func() { tx.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA cache_size = %d`, was)) }, nil
}

func insertIntentsSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT OR IGNORE INTO notify_intents
		(key, kind, account, grid, to_phone, ref, vars, priority, not_before, created_at, enqueued_at, state) VALUES `)
	b.WriteString(store.Values(false, rows, intentCols))
	return b.String()
}

// pgIntentRows is how many intents one PostgreSQL statement carries, as
// arrays: one round trip instead of one an intent.
const pgIntentRows = 10000

// insertRecsPG inserts recs from column arrays, pgIntentRows per statement.
// The plan is a function scan feeding the insert, so rows go in in the
// order unnest returns them, the caller's (an ORDER BY on WITH ORDINALITY
// cost a tenth more for nothing).
func insertRecsPG(ctx context.Context, tx *sql.Tx, recs []intentRec, enqueued int64) error {
	for len(recs) > 0 {
		n := min(pgIntentRows, len(recs))
		var c intentColumns
		c.grow(n)
		for _, r := range recs[:n] {
			c.add(r)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO notify_intents
			(key, kind, account, grid, to_phone, ref, vars, priority, not_before, created_at, enqueued_at, state)
			SELECT k, kd, a, g, t, r, v, p, nb, c, $11, $12
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
				$8::int[], $9::bigint[], $10::bigint[]) AS i (k, kd, a, g, t, r, v, p, nb, c)
			ON CONFLICT (key) DO NOTHING`,
			c.key, c.kind, c.account, c.grid, c.to, c.ref, c.vars, c.prio, c.notBefore, c.created, enqueued, StatusPending)
		if err != nil {
			return fmt.Errorf("cannot enqueue intents: %w", err)
		}
		recs = recs[n:]
	}
	return nil
}

// intentColumns holds intents column by column, as PostgreSQL arrays.
type intentColumns struct {
	key, kind, account, grid, to, ref, vars []string
	prio                                    []int32
	notBefore, created                      []int64
}

func (c *intentColumns) grow(n int) {
	for _, s := range []*[]string{&c.key, &c.kind, &c.account, &c.grid, &c.to, &c.ref, &c.vars} {
		*s = make([]string, 0, n)
	}
	c.prio, c.notBefore, c.created = make([]int32, 0, n), make([]int64, 0, n), make([]int64, 0, n)
}

func (c *intentColumns) add(r intentRec) {
	c.key, c.kind, c.account = append(c.key, r.key), append(c.kind, r.kind), append(c.account, r.account)
	c.grid, c.to, c.ref, c.vars = append(c.grid, r.grid), append(c.to, r.to), append(c.ref, r.ref), append(c.vars, r.vars)
	c.prio = append(c.prio, r.prio)
	c.notBefore, c.created = append(c.notBefore, r.notBefore), append(c.created, r.created)
}
