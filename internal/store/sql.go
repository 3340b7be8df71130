package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// Marks returns n placeholders separated by commas, for an IN list or a
// VALUES tuple: $start+1 … $start+n when numbered (PostgreSQL), else "?"
// each. SQLite's driver looks "$n" up by name, in time linear in the
// statement's parameters, so many-row statements bind "?" faster there.
func Marks(numbered bool, start, n int) string {
	if n <= 0 {
		return ""
	}
	if !numbered {
		return strings.Repeat("?,", n-1) + "?"
	}
	b := make([]byte, 0, n*6)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(start+i+1), 10)
	}
	return string(b)
}

// Values returns the VALUES list of a multi-row INSERT: rows tuples of cols
// placeholders, numbered in order when numbered.
func Values(numbered bool, rows, cols int) string {
	var b strings.Builder
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		b.WriteString(Marks(numbered, r*cols, cols))
		b.WriteByte(')')
	}
	return b.String()
}

// Values is the package Values in this store's fastest placeholder style.
func (db *DB) Values(rows, cols int) string { return Values(db.Postgres(), rows, cols) }

// ExecBatches runs a multi-row statement over n rows, per rows at most to a
// statement: sqlFor(k) is the statement for k rows, and fill appends to args
// the arguments of rows [from, to). Full batches share one prepared
// statement; the last, shorter one runs unprepared. Rows are filled a batch
// at a time, so a caller never holds every row's arguments at once.
func ExecBatches(ctx context.Context, tx *sql.Tx, n, per int, sqlFor func(rows int) string,
	fill func(args []any, from, to int) ([]any, error)) error {
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	var args []any
	for from := 0; from < n; from += per {
		to := min(from+per, n)
		var err error
		if args, err = fill(args[:0], from, to); err != nil {
			return err
		}
		if to-from < per {
			_, err = tx.ExecContext(ctx, sqlFor(to-from), args...)
		} else {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, sqlFor(per)); err != nil {
					return err
				}
			}
			_, err = full.ExecContext(ctx, args...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Upsert writes rows of len(cols) values each (vals, row after row) with
// multi-row INSERT … ON CONFLICT (the first keys columns) DO UPDATE of the
// others, in each store's fastest placeholder style (Values): on SQLite
// "?", which binds in time linear in the parameters, so a statement may
// carry as many rows as PostgreSQL's, where size saves round trips.
func Upsert(ctx context.Context, tx *sql.Tx, postgres bool, table string, cols []string, keys int, vals []any) error {
	nc := len(cols)
	rows := 100
	if postgres {
		rows = 1000
	}
	err := ExecBatches(ctx, tx, len(vals)/nc, rows,
		func(n int) string { return upsertSQL(postgres, table, cols, keys, n) },
		func(args []any, from, to int) ([]any, error) { return append(args, vals[from*nc:to*nc]...), nil })
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", table, err)
	}
	return nil
}

func upsertSQL(postgres bool, table string, cols []string, keys, rows int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", table, strings.Join(cols, ", "))
	b.WriteString(Values(postgres, rows, len(cols)))
	fmt.Fprintf(&b, " ON CONFLICT (%s) DO UPDATE SET ", strings.Join(cols[:keys], ", "))
	for i, c := range cols[keys:] {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s = excluded.%s", c, c)
	}
	return b.String()
}
