package store

import (
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
