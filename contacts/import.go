package contacts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gridbell/gridbell/internal/store"
)

// importer runs one import inside its transaction.
type importer struct {
	ctx context.Context
	tx  *sql.Tx
	old *index
	id  int64
	up  *upserter
}

func newImport(ctx context.Context, db *store.DB, tx *sql.Tx, old *index) (*importer, error) {
	id, err := nextImportID(ctx, db, tx)
	if err != nil {
		return nil, err
	}
	up, err := newUpserter(ctx, db, tx, id)
	if err != nil {
		return nil, err
	}
	return &importer{ctx: ctx, tx: tx, old: old, id: id, up: up}, nil
}

// nextImportID numbers an import. Imports take turns (a lock on
// PostgreSQL, the single writer on SQLite), so ids grow in commit order
// and Refresh, which looks at the largest, sees every import; the sequence
// keeps ids unique should anything write contacts_imports without the lock.
func nextImportID(ctx context.Context, db *store.DB, tx *sql.Tx) (int64, error) {
	if err := db.LockTx(ctx, tx, "contacts_import"); err != nil {
		return 0, fmt.Errorf("cannot number contacts import: %w", err)
	}
	q := `SELECT COALESCE(MAX(id), 0) + 1 FROM contacts_imports`
	if db.Postgres() {
		q = `SELECT nextval('contacts_import_ids')`
	}
	var id int64
	if err := tx.QueryRowContext(ctx, q).Scan(&id); err != nil {
		return 0, fmt.Errorf("cannot number contacts import: %w", err)
	}
	return id, nil
}

// run stores the rows of fr, retires the customers it lacks and builds the
// new index, which the caller swaps in after commit.
func (im *importer) run(fr *fileReader, rw *rejectWriter) (Summary, *index, error) {
	b := newBuilder(max(im.old.meters.len(), 1024))
	sum := Summary{Encoding: fr.encoding}
	read := func(put func(*row) error) error {
		return readRows(fr, b, rw, &sum, func(r *row) error {
			switch m, ok := im.old.meters.find(r.f[colMeter]); {
			case !ok:
				sum.Added++
			case im.old.meter[m].flag(flagRetired) || im.old.meterSum[m] != r.sum:
				sum.Updated++
			default:
				sum.Unchanged++
			}
			return put(r)
		})
	}
	err := pipeRows(read, im.up.add)
	if err == nil {
		err = im.up.flush()
	}
	if err != nil {
		return sum, nil, err
	}
	if sum.Imported == 0 {
		return sum, nil, fmt.Errorf("cannot import contacts: %w", ErrNoRows)
	}
	if err := im.retire(b, &sum); err != nil {
		return sum, nil, err
	}
	ix := b.freeze()
	if err := applyStates(im.ctx, im.tx, ix); err != nil {
		return sum, nil, err
	}
	writeContactRejects(ix, rw)
	sum.Accounts = ix.active
	sum.Report = ix.cachedReport() // counted once: publish reads the same cache
	sum.Report.Encoding, sum.Report.Rejected = sum.Encoding, sum.Rejected
	return sum, ix, im.record(&sum)
}

// retire marks the customers this import did not see and adds every retired
// customer to b, so that their accounts still answer with Retired set.
func (im *importer) retire(b *builder, sum *Summary) error {
	res, err := im.tx.ExecContext(im.ctx, `UPDATE contacts_customers SET retired = 1 WHERE import_id <> $1 AND retired = 0`, im.id)
	if err != nil {
		return fmt.Errorf("cannot retire contacts: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("cannot retire contacts: %w", err)
	}
	sum.Retired = int(n)
	return scanCustomers(im.ctx, im.tx, `WHERE retired = 1`, b.addRow)
}

func (im *importer) record(sum *Summary) error {
	_, err := im.tx.ExecContext(im.ctx, `INSERT INTO contacts_imports (id, at, encoding, rows_read, imported, rejected, added, retired)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		im.id, now(), sum.Encoding, sum.Rows, sum.Imported, sum.Rejected, sum.Added, sum.Retired)
	if err != nil {
		return fmt.Errorf("cannot record contacts import: %w", err)
	}
	return nil
}

// readRows reads every row of fr into b, refusing bad rows and repeated
// meters into rw, and calls each (when set) for every accepted row.
func readRows(fr *fileReader, b *builder, rw *rejectWriter, sum *Summary, each func(*row) error) error {
	for {
		r, rej, ok, err := fr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot read contacts file: %w", err)
		}
		sum.Rows++
		if ok && !b.add(&r) {
			rej, ok = reject{line: int(r.line), column: "meter", reason: "rejected: duplicate meter", raw: r.f[colMeter]}, false
		}
		if !ok {
			rw.add(rej)
			sum.Rejected++
			continue
		}
		sum.Imported++
		if each != nil {
			if err := each(&r); err != nil {
				return err
			}
		}
	}
}

// writeContactRejects lists, in file order, the active accounts that have
// no number able to take SMS: one line each, its reason starting with the
// report column it is counted in (landline_only, invalid or missing).
func writeContactRejects(ix *index, rw *rejectWriter) {
	for a := range int32(len(ix.acct)) {
		if ix.acct[a].retired {
			continue
		}
		q := ix.quality(a)
		if q.bucket == Valid || q.bucket == Fixed {
			continue
		}
		rw.add(reject{line: int(ix.firstLine[a]), column: "phone", reason: bucketName(q.bucket) + ": " + q.reason, raw: ix.rawPhones(a)})
	}
}

func (ix *index) rawPhones(a int32) string {
	var raws []string
	for i := ix.acctContactOff[a]; i < ix.acctContactOff[a+1]; i++ {
		raws = append(raws, ix.raws.get(i))
	}
	return strings.Join(raws, " / ")
}
