package notify

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// expTx is an expansion's transaction. It reads every message a batch of
// intents may touch in one query, keeps the messages and links the batch
// makes, and stores them many rows a statement at the end: on PostgreSQL
// each statement is a round trip, and expansion ran two an intent.
type expTx struct {
	*cachedTx
	pg    bool
	known map[string]*msgRow // by key; nil: no such message
	fresh []*msgRow          // messages made, in order, not stored yet
	links []any              // notify_links rows not stored yet, linkCols values each
}

const linkCols = 8

func newExpTx(tx *cachedTx, pg bool) *expTx {
	return &expTx{cachedTx: tx, pg: pg, known: map[string]*msgRow{}}
}

// lookupAccounts returns each intent's account, nil for an intent with an
// explicit recipient or an unknown account: the registry assembles an
// account on every call, so expansion asks once an intent.
func (o *Outbox) lookupAccounts(ins []event.Intent) []*contacts.Account {
	accts := make([]*contacts.Account, len(ins))
	for i, in := range ins {
		if in.To != "" {
			continue
		}
		if a, ok := o.dir.Account(in.Account); ok {
			accts[i] = &a
		}
	}
	return accts
}

// msgKeys returns the keys of the messages ins may become or join: what
// prefetch reads. One it misses is read when asked for.
func msgKeys(ins []event.Intent, accts []*contacts.Account) []string {
	var keys []string
	add := func(in event.Intent, phone string) {
		keys = append(keys, msgKey(in, phone))
		if in.Kind == event.KindRestored {
			in.Kind = event.KindOutage
			keys = append(keys, msgKey(in, phone))
		}
	}
	for i, in := range ins {
		if in.To != "" {
			add(in, in.To)
			continue
		}
		if acct := accts[i]; acct != nil && !acct.Retired {
			for _, c := range acct.Contacts {
				if c.Phone != "" && contactReason(c) == "" {
					add(in, c.Phone)
				}
			}
		}
	}
	return keys
}

// prefetch reads the messages of keys; a key it does not find has none.
func (tx *expTx) prefetch(ctx context.Context, keys []string) error {
	var todo []string
	for _, k := range keys {
		if _, ok := tx.known[k]; !ok {
			tx.known[k] = nil
			todo = append(todo, k)
		}
	}
	if tx.pg {
		return tx.read(ctx, `SELECT `+msgCols+` FROM notify_messages WHERE msg_key = ANY($1)`, todo)
	}
	const chunk = 100
	for start := 0; start < len(todo); start += chunk {
		part := todo[start:min(start+chunk, len(todo))]
		args := make([]any, len(part))
		for i, k := range part {
			args[i] = k
		}
		if err := tx.read(ctx, `SELECT `+msgCols+` FROM notify_messages WHERE msg_key IN (`+store.Marks(false, 0, len(part))+`)`, args...); err != nil {
			return err
		}
	}
	return nil
}

// read runs q and remembers the messages it returns.
func (tx *expTx) read(ctx context.Context, q string, args ...any) error {
	s, err := tx.stmt(ctx, q)
	if err != nil {
		return fmt.Errorf("cannot read messages: %w", err)
	}
	rows, err := s.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("cannot read messages: %w", err)
	}
	ms, err := readMsgs(rows)
	if err != nil {
		return err
	}
	for _, m := range ms {
		tx.known[m.key] = m
	}
	return nil
}

// getMsg returns the message of key, made in tx or stored, or nil.
func (tx *expTx) getMsg(ctx context.Context, key string) (*msgRow, error) {
	if m, ok := tx.known[key]; ok {
		return m, nil
	}
	tx.known[key] = nil
	if err := tx.read(ctx, `SELECT `+msgCols+` FROM notify_messages WHERE msg_key = $1`, key); err != nil {
		return nil, err
	}
	return tx.known[key], nil
}

// msgInsertCols is the number of notify_messages columns.
const msgInsertCols = 21

// flush stores the messages and links tx made.
func (tx *expTx) flush(ctx context.Context, now time.Time) error {
	vals := make([]any, 0, len(tx.fresh)*msgInsertCols)
	at := now.UnixNano()
	for _, m := range tx.fresh {
		vars, err := encodeVars(m.vars)
		if err != nil {
			return fmt.Errorf("cannot encode vars of message %s: %w", m.id, err)
		}
		vals = append(vals, m.id, m.key, m.kind, m.template, m.ref, m.phone, strings.Join(m.accounts, ","), m.grid,
			m.lang, vars, m.body, m.priority, m.status, m.reason, 0, m.due.UnixNano(), at, int64(0), int64(0), "", at)
		m.fresh = false
	}
	tx.fresh = tx.fresh[:0]
	err := tx.insertMany(ctx, `notify_messages (id, msg_key, kind, template, ref, phone, accounts, grid, lang, vars, body,
		priority, status, reason, attempts, due_at, queued_at, claimed_at, sent_at, provider_id, updated_at)`, msgInsertCols, vals, "msg_key")
	if err != nil {
		return fmt.Errorf("cannot store messages: %w", err)
	}
	return tx.flushLinks(ctx)
}

// flushLinks stores the links tx made.
func (tx *expTx) flushLinks(ctx context.Context) error {
	err := tx.insertMany(ctx, `notify_links (intent_key, phone, account, ref, message_id, status, reason, created_at)`,
		linkCols, tx.links, "intent_key, phone")
	tx.links = tx.links[:0]
	if err != nil {
		return fmt.Errorf("cannot store links: %w", err)
	}
	return nil
}

// insertMany inserts rows of cols values each into table (with its column
// list), many a statement, ignoring rows whose conflict columns exist. On
// SQLite that is INSERT OR IGNORE: a multi-row statement that may abort
// writes a statement journal; the tables have no NOT NULL column a bound
// value could violate, and their id is a hash of their unique key.
func (tx *expTx) insertMany(ctx context.Context, table string, cols int, vals []any, conflict string) error {
	rows := 32 // the SQLite driver's cost per parameter grows with the statement's
	if tx.pg {
		rows = min(1000, 65535/cols)
	}
	for len(vals) > 0 {
		n := min(rows*cols, len(vals))
		q := insertSQL(tx.pg, table, cols, n/cols, conflict)
		var err error
		if n == rows*cols {
			_, err = tx.ExecContext(ctx, q, vals[:n]...) // prepared once
		} else {
			_, err = tx.Tx.ExecContext(ctx, q, vals[:n]...)
		}
		if err != nil {
			return err
		}
		vals = vals[n:]
	}
	return nil
}

func insertSQL(pg bool, table string, cols, rows int, conflict string) string {
	var b strings.Builder
	if pg {
		b.WriteString("INSERT INTO " + table + " VALUES ")
	} else {
		b.WriteString("INSERT OR IGNORE INTO " + table + " VALUES ")
	}
	b.WriteString(store.Values(pg, rows, cols))
	if pg {
		b.WriteString(" ON CONFLICT (" + conflict + ") DO NOTHING")
	}
	return b.String()
}
