package contacts

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// migrations of the contacts tables: append, never edit. One row per meter
// as the file gave it (normalised, packed in record), so the index can be
// rebuilt at start;
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
	// The first shape of contacts_customers, one column per field, made the
	// import and rebuild too slow; nothing had been released with it.
	`DROP TABLE contacts_customers`,
	`CREATE TABLE contacts_customers (
		meter TEXT PRIMARY KEY,
		account TEXT NOT NULL,
		grid TEXT NOT NULL,
		record TEXT NOT NULL,
		retired INTEGER NOT NULL,
		seq INTEGER NOT NULL,
		line INTEGER NOT NULL,
		import_id INTEGER NOT NULL)`,
	// Instances sharing a PostgreSQL store number their imports from a
	// sequence (MAX(id)+1 gave two of them the same id). SQLite numbers
	// them under its single writer: there the steps do nothing.
	postgresOnly + `CREATE SEQUENCE contacts_import_ids`,
	postgresOnly + `SELECT setval('contacts_import_ids', (SELECT COALESCE(MAX(id), 0) + 1 FROM contacts_imports), false)`,
	// changed_at (unix ns) lets every instance pick up the phone states
	// another one stored (StateFeed).
	`ALTER TABLE contacts_phone_state ADD COLUMN changed_at BIGINT NOT NULL DEFAULT 0`,
	`CREATE INDEX contacts_phone_state_changed ON contacts_phone_state (changed_at)`,
	// area_name, the transformer area's name, became the record's last
	// field: stored records get it empty.
	"UPDATE contacts_customers SET record = record || '\x1f'",
}

// postgresOnly marks a migration that runs on PostgreSQL only; on SQLite
// the step is kept, as a no-op, so that both stores share version numbers.
const postgresOnly = "-- postgres only\n"

// migrationsFor returns the migrations to run on a store of driver.
func migrationsFor(driver string) []string {
	out := make([]string, len(migrations))
	for i, m := range migrations {
		if strings.HasPrefix(m, postgresOnly) && driver != "postgres" {
			m = "SELECT 1"
		}
		out[i] = m
	}
	return out
}

// customerCols are the stored columns. record holds the row's fields, in
// column order, joined by recordSep: one text to bind and scan instead of
// fifteen, which halves the embedded SQLite's import and rebuild time.
const customerCols = `meter, account, grid, record, retired, seq, line`

const numCustomerCols = 8 // customerCols and import_id

// recordSep joins a record's fields; the importer turns it into a space in
// the rare field that holds it.
const recordSep = '\x1f'

// querier is what scanning needs of a DB or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// scanSelect reads a customer as one text: its record, then retired, seq
// and line, all joined by recordSep. One column costs the drivers far less
// than seven; SQLite and PostgreSQL both turn integers into text for ||.
const scanSelect = "SELECT record || '\x1f' || retired || '\x1f' || seq || '\x1f' || line FROM contacts_customers "

// scanCustomers calls emit with each stored customer matching where.
func scanCustomers(ctx context.Context, q querier, where string, emit func(*row) error) error {
	rows, err := q.QueryContext(ctx, scanSelect+where)
	if err != nil {
		return fmt.Errorf("cannot read contacts: %w", err)
	}
	defer rows.Close()
	var r row
	var text string
	for rows.Next() {
		if err := rows.Scan(&text); err != nil {
			return fmt.Errorf("cannot read contacts: %w", err)
		}
		if err := r.unpackStored(text); err != nil {
			return fmt.Errorf("cannot read contacts: %w", err)
		}
		r.clean() // here, so that a pipeline's consumer has less to do
		if err := emit(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read contacts: %w", err)
	}
	return nil
}

// unpackStored reads what scanSelect returns.
func (r *row) unpackStored(text string) error {
	var nums [3]int64
	for i := len(nums) - 1; i >= 0; i-- {
		j := strings.LastIndexByte(text, recordSep)
		if j < 0 {
			return fmt.Errorf("stored customer %.20q is cut short", text)
		}
		n, err := strconv.ParseInt(text[j+1:], 10, 64)
		if err != nil {
			return fmt.Errorf("stored customer %.20q: %w", text, err)
		}
		nums[i], text = n, text[:j]
	}
	if err := r.unpack(text); err != nil {
		return fmt.Errorf("stored customer %.20q: %w", text, err)
	}
	r.retired, r.seq, r.line = nums[0] != 0, int32(nums[1]), int32(nums[2])
	return nil
}

// pack joins r's fields into a record.
func (r *row) pack(buf []byte) []byte {
	for c, f := range r.f {
		if c > 0 {
			buf = append(buf, recordSep)
		}
		buf = append(buf, f...)
	}
	return buf
}

// fingerprint hashes r's fields (FNV-1a), as stored by pack: a row read
// again from an unchanged file has the same one.
func (r *row) fingerprint() uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for c, f := range r.f {
		if c > 0 {
			h = (h ^ recordSep) * prime
		}
		for i := 0; i < len(f); i++ {
			h = (h ^ uint64(f[i])) * prime
		}
	}
	return h
}

// unpack splits a record into r's fields, substrings of record.
func (r *row) unpack(record string) error {
	for c := range numColumns - 1 {
		i := strings.IndexByte(record, recordSep)
		if i < 0 {
			return fmt.Errorf("record has %d fields, want %d", c+1, numColumns)
		}
		r.f[c], record = record[:i], record[i+1:]
	}
	r.f[numColumns-1] = record
	r.class, r.prepaid, r.optOut = Class(r.f[colClass]), r.f[colPrepaid] == "1", r.f[colOptOut] == "1"
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
		applyState(ix, phone, verdict, reason, optOut)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read phone states: %w", err)
	}
	return nil
}

// applyState sets one stored phone state on ix: verdict "" and optOut -1
// mean none was recorded.
func applyState(ix *index, phone, verdict, reason string, optOut int64) {
	if verdict != "" {
		ix.setVerdict(phone, Verdict(verdict), reason)
	}
	if optOut >= 0 {
		ix.setOptOut(phone, optOut == 1)
	}
}

// latestImport returns the id of the latest committed import, 0 for none.
func latestImport(ctx context.Context, db *store.DB) (int64, error) {
	var id int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM contacts_imports`).Scan(&id); err != nil {
		return 0, fmt.Errorf("cannot read the latest contacts import: %w", err)
	}
	return id, nil
}

// storeVerdict stores a verdict and returns the change's changed_at.
func storeVerdict(ctx context.Context, db *store.DB, e164 string, v Verdict, reason string) (int64, error) {
	changed := time.Now().UnixNano()
	_, err := db.ExecContext(ctx, `INSERT INTO contacts_phone_state (phone, verdict, reason, opt_out, updated_at, changed_at)
		VALUES ($1, $2, $3, -1, $4, $5)
		ON CONFLICT (phone) DO UPDATE SET verdict = excluded.verdict, reason = excluded.reason, updated_at = excluded.updated_at,
		changed_at = excluded.changed_at`,
		e164, string(v), reason, now(), changed)
	if err != nil {
		return 0, fmt.Errorf("cannot store phone verdict: %w", err)
	}
	return changed, nil
}

// storeOptOut stores an opt-out or opt-in and returns the change's
// changed_at.
func storeOptOut(ctx context.Context, db *store.DB, e164 string, optOut bool) (int64, error) {
	v := 0
	if optOut {
		v = 1
	}
	changed := time.Now().UnixNano()
	_, err := db.ExecContext(ctx, `INSERT INTO contacts_phone_state (phone, verdict, reason, opt_out, updated_at, changed_at)
		VALUES ($1, '', '', $2, $3, $4)
		ON CONFLICT (phone) DO UPDATE SET opt_out = excluded.opt_out, updated_at = excluded.updated_at, changed_at = excluded.changed_at`,
		e164, v, now(), changed)
	if err != nil {
		return 0, fmt.Errorf("cannot store phone opt-out: %w", err)
	}
	return changed, nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// batchRows is how many rows one INSERT carries on PostgreSQL, to save
// round trips: 8 parameters each, well under its 65535. On SQLite short
// statements measured fastest (BenchmarkSQLiteBatch).
func batchRows(db *store.DB) int {
	if db.Postgres() {
		return 256
	}
	return sqliteBatchRows
}

var sqliteBatchRows = 16

// upserter writes customers in multi-row upserts, reusing one prepared
// statement for full batches.
type upserter struct {
	ctx      context.Context
	tx       *sql.Tx
	pg       bool
	importID int64
	full     *sql.Stmt
	batch    int
	buf      []byte
	args     []any
	n        int
}

func newUpserter(ctx context.Context, db *store.DB, tx *sql.Tx, importID int64) (*upserter, error) {
	batch := batchRows(db)
	full, err := tx.PrepareContext(ctx, upsertSQL(db.Postgres(), batch))
	if err != nil {
		return nil, fmt.Errorf("cannot prepare contacts upsert: %w", err)
	}
	return &upserter{ctx: ctx, tx: tx, pg: db.Postgres(), importID: importID, full: full, batch: batch, args: make([]any, 0, batch*numCustomerCols)}, nil
}

// upsertSQL is the upsert of n customers in the store's fastest
// placeholder style (store.Values).
func upsertSQL(pg bool, n int) string {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO contacts_customers (` + customerCols + `, import_id) VALUES `)
	sb.WriteString(store.Values(pg, n, numCustomerCols))
	sb.WriteString(` ON CONFLICT (meter) DO UPDATE SET account = excluded.account, grid = excluded.grid,
		record = excluded.record, retired = 0, seq = excluded.seq, line = excluded.line, import_id = excluded.import_id`)
	return sb.String()
}

func (u *upserter) add(r *row) error {
	u.buf = r.pack(u.buf[:0])
	u.args = append(u.args, r.f[colMeter], r.f[colAccount], r.f[colGrid], string(u.buf), 0, r.seq, r.line, u.importID)
	u.n++
	if u.n < u.batch {
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
	_, err := u.tx.ExecContext(u.ctx, upsertSQL(u.pg, u.n), u.args...)
	if err != nil {
		return fmt.Errorf("cannot store contacts: %w", err)
	}
	return nil
}
