package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DataError reports whether err is the store refusing the data itself: a
// PostgreSQL data exception or integrity constraint violation (SQLSTATE
// classes 22 and 23), or SQLite's constraint, too-big, mismatch and range
// errors. Offering the same data again fails the same way. Every other
// failure (no connection, a full disk, a restart, a lock) says nothing
// against the data and may pass once the store recovers.
func DataError(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return len(pg.Code) == 5 && (pg.Code[:2] == "22" || pg.Code[:2] == "23")
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
			return true
		}
	}
	return false
}

// WriteRefused reports whether err is the store refusing to write for want
// of room or a moment's access, while it still reads: SQLite's full disk
// or database, I/O error or lock timeout, or a PostgreSQL SQLSTATE of
// class 53 (insufficient resources: disk full, out of memory, too many
// connections). The same write may pass once the store recovers; the
// state it read before is still good.
func WriteRefused(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return len(pg.Code) == 5 && pg.Code[:2] == "53"
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff {
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	return false
}
