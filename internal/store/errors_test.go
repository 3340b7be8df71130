package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// TestDataError: the store refusing the data itself (a key collision, a
// value out of range, bytes PostgreSQL cannot hold) is a DataError; a store
// that cannot be reached is not.
func TestDataError(t *testing.T) {
	ctx := context.Background()
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			if _, err := db.ExecContext(ctx, `CREATE TABLE t_data (k TEXT PRIMARY KEY, n SMALLINT CHECK (n < 100))`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO t_data (k, n) VALUES ('a', 1)`); err != nil {
				t.Fatal(err)
			}
			refused := map[string]string{
				"key collision": `INSERT INTO t_data (k, n) VALUES ('a', 2)`,
				"check":         `INSERT INTO t_data (k, n) VALUES ('b', 200)`,
			}
			if driver == "postgres" {
				refused["out of range"] = `INSERT INTO t_data (k, n) VALUES ('c', 70000)`
				refused["bad bytes"] = "INSERT INTO t_data (k, n) VALUES (convert_from('\\x00'::bytea, 'UTF8'), 1)"
			}
			for what, q := range refused {
				_, err := db.ExecContext(ctx, q)
				if err == nil || !store.DataError(err) {
					t.Errorf("%s: DataError(%v) = false, want true", what, err)
				}
			}
			if _, err := db.ExecContext(ctx, `SELECT * FROM t_missing`); err == nil || store.DataError(err) {
				t.Errorf("a missing table: DataError(%v) = true, want false", err)
			}
			db.Close()
			if _, err := db.ExecContext(ctx, `INSERT INTO t_data (k, n) VALUES ('d', 1)`); err == nil || store.DataError(err) {
				t.Errorf("a closed store: DataError(%v) = true, want false", err)
			}
		})
	}
}

// TestWriteRefused: a SQLite database that may not grow (max_page_count)
// refuses a write as full, WriteRefused; a key collision is no such thing.
func TestWriteRefused(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, "sqlite")
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `CREATE TABLE t_full (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var pages int64
	if err := c.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages+2)); err != nil {
		t.Fatal(err)
	}
	_, err = c.ExecContext(ctx, `INSERT INTO t_full (k, v) VALUES (1, $1)`, strings.Repeat("x", 1<<20))
	if err == nil || !store.WriteRefused(err) || store.DataError(err) {
		t.Errorf("a full database: WriteRefused(%v) = %v, DataError = %v; want true, false", err, store.WriteRefused(err), store.DataError(err))
	}
	if _, err := c.ExecContext(ctx, `INSERT INTO t_full (k, v) VALUES (2, 'a')`); err != nil {
		t.Fatal(err)
	}
	_, err = c.ExecContext(ctx, `INSERT INTO t_full (k, v) VALUES (2, 'b')`)
	if err == nil || store.WriteRefused(err) {
		t.Errorf("a key collision: WriteRefused(%v) = true, want false", err)
	}
}
