package contacts

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// migrations of the contacts tables: append, never edit. One row per meter
// as the file gave it (normalised), so the index can be rebuilt at start;
// phone states hold what Twilio and STOP/START replies said later.
var migrations = []string{
	`CREATE TABLE contacts_customers (
		meter TEXT PRIMARY KEY,
		account TEXT NOT NULL,
		name TEXT NOT NULL,
		concentrator TEXT NOT NULL,
		area TEXT NOT NULL,
		feeder TEXT NOT NULL,
		grid TEXT NOT NULL,
		manager TEXT NOT NULL,
		manager_phone TEXT NOT NULL,
		class TEXT NOT NULL,
		prepaid INTEGER NOT NULL,
		phone TEXT NOT NULL,
		phone2 TEXT NOT NULL,
		language TEXT NOT NULL,
		opt_out INTEGER NOT NULL,
		retired INTEGER NOT NULL,
		seq INTEGER NOT NULL,
		line INTEGER NOT NULL,
		import_id INTEGER NOT NULL)`,
	`CREATE TABLE contacts_phone_state (
		phone TEXT PRIMARY KEY,
		verdict TEXT NOT NULL,
		reason TEXT NOT NULL,
		opt_out INTEGER NOT NULL,
		updated_at TEXT NOT NULL)`,
	`CREATE TABLE contacts_imports (
		id INTEGER PRIMARY KEY,
		at TEXT NOT NULL,
		encoding TEXT NOT NULL,
		rows_read INTEGER NOT NULL,
		imported INTEGER NOT NULL,
		rejected INTEGER NOT NULL,
		added INTEGER NOT NULL,
		retired INTEGER NOT NULL)`,
}

// customerCols are the stored columns in row.f order, then the flags.
const customerCols = `meter, account, name, concentrator, area, feeder, grid, manager, manager_phone,
	class, prepaid, phone, phone2, language, opt_out, retired, seq, line`

// storedOrder maps the select/insert order of the text columns to row.f.
var storedOrder = []column{colMeter, colAccount, colName, colConcentrator, colArea, colFeeder, colGrid,
	colManager, colManagerPhone, colClass}

// querier is what scanning needs of a DB or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// scanCustomers feeds the stored customers matching where into b.
func scanCustomers(ctx context.Context, q querier, where string, b *builder) error {
	rows, err := q.QueryContext(ctx, `SELECT `+customerCols+` FROM contacts_customers `+where)
	if err != nil {
		return fmt.Errorf("cannot read contacts: %w", err)
	}
	defer rows.Close()
	var r row
	dest := make([]any, 0, 18)
	for _, c := range storedOrder {
		dest = append(dest, &r.f[c])
	}
	var prepaid, optOut, retired, seq, line int64
	dest = append(dest, &prepaid, &r.f[colPhone], &r.f[colPhone2], &r.f[colLanguage], &optOut, &retired, &seq, &line)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("cannot read contacts: %w", err)
		}
		r.prepaid, r.optOut, r.retired, r.class = prepaid != 0, optOut != 0, retired != 0, Class(r.f[colClass])
		r.seq, r.line = int32(seq), int32(line)
		b.add(&r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read contacts: %w", err)
	}
	return nil
}

// applyStates sets the stored phone states on ix.
func applyStates(ctx context.Context, q querier, ix *index) error {
	rows, err := q.QueryContext(ctx, `SELECT phone, verdict, reason, opt_out FROM contacts_phone_state`)
	if err != nil {
		return fmt.Errorf("cannot read phone states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var phone, verdict, reason string
		var optOut int64
		if err := rows.Scan(&phone, &verdict, &reason, &optOut); err != nil {
			return fmt.Errorf("cannot read phone states: %w", err)
		}
		if verdict != "" {
			ix.setVerdict(phone, Verdict(verdict), reason)
		}
		if optOut >= 0 {
			ix.setOptOut(phone, optOut == 1)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read phone states: %w", err)
	}
	return nil
}

func storeVerdict(ctx context.Context, db *store.DB, e164 string, v Verdict, reason string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO contacts_phone_state (phone, verdict, reason, opt_out, updated_at)
		VALUES ($1, $2, $3, -1, $4)
		ON CONFLICT (phone) DO UPDATE SET verdict = excluded.verdict, reason = excluded.reason, updated_at = excluded.updated_at`,
		e164, string(v), reason, now())
	if err != nil {
		return fmt.Errorf("cannot store phone verdict: %w", err)
	}
	return nil
}

func storeOptOut(ctx context.Context, db *store.DB, e164 string, optOut bool) error {
	v := 0
	if optOut {
		v = 1
	}
	_, err := db.ExecContext(ctx, `INSERT INTO contacts_phone_state (phone, verdict, reason, opt_out, updated_at)
		VALUES ($1, '', '', $2, $3)
		ON CONFLICT (phone) DO UPDATE SET opt_out = excluded.opt_out, updated_at = excluded.updated_at`,
		e164, v, now())
	if err != nil {
		return fmt.Errorf("cannot store phone opt-out: %w", err)
	}
	return nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// batchRows is how many rows one INSERT carries: 19 parameters each, well
// under SQLite's 32766 and PostgreSQL's 65535.
const batchRows = 256

// upserter writes customers in multi-row upserts, reusing one prepared
// statement for full batches.
type upserter struct {
	ctx      context.Context
	tx       *sql.Tx
	importID int64
	full     *sql.Stmt
	args     []any
	n        int
}

func newUpserter(ctx context.Context, tx *sql.Tx, importID int64) (*upserter, error) {
	full, err := tx.PrepareContext(ctx, upsertSQL(batchRows))
	if err != nil {
		return nil, fmt.Errorf("cannot prepare contacts upsert: %w", err)
	}
	return &upserter{ctx: ctx, tx: tx, importID: importID, full: full, args: make([]any, 0, batchRows*19)}, nil
}

func upsertSQL(n int) string {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO contacts_customers (` + customerCols + `, import_id) VALUES `)
	p := 1
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('(')
		for j := range 19 {
			if j > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "$%d", p)
			p++
		}
		sb.WriteByte(')')
	}
	sb.WriteString(` ON CONFLICT (meter) DO UPDATE SET account = excluded.account, name = excluded.name,
		concentrator = excluded.concentrator, area = excluded.area, feeder = excluded.feeder, grid = excluded.grid,
		manager = excluded.manager, manager_phone = excluded.manager_phone, class = excluded.class,
		prepaid = excluded.prepaid, phone = excluded.phone, phone2 = excluded.phone2, language = excluded.language,
		opt_out = excluded.opt_out, retired = 0, seq = excluded.seq, line = excluded.line, import_id = excluded.import_id`)
	return sb.String()
}

func (u *upserter) add(r *row) error {
	for _, c := range storedOrder {
		u.args = append(u.args, r.f[c])
	}
	u.args = append(u.args, boolInt(r.prepaid), r.f[colPhone], r.f[colPhone2], r.f[colLanguage],
		boolInt(r.optOut), 0, r.seq, r.line, u.importID)
	u.n++
	if u.n < batchRows {
		return nil
	}
	_, err := u.full.ExecContext(u.ctx, u.args...)
	u.args, u.n = u.args[:0], 0
	if err != nil {
		return fmt.Errorf("cannot store contacts: %w", err)
	}
	return nil
}

func (u *upserter) flush() error {
	defer u.full.Close()
	if u.n == 0 {
		return nil
	}
	_, err := u.tx.ExecContext(u.ctx, upsertSQL(u.n), u.args...)
	if err != nil {
		return fmt.Errorf("cannot store contacts: %w", err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
