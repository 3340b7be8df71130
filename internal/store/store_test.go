package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

func TestMigrateIsIdempotent(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			ctx := context.Background()
			stmts := []string{
				`CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`,
				`INSERT INTO kv (k, v) VALUES ('a', 1)`,
			}
			for i := 0; i < 2; i++ {
				if err := db.Migrate(ctx, "test", stmts); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = kv.v + excluded.v`, "a", 2); err != nil {
				t.Fatal(err)
			}
			var v int64
			if err := db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = $1`, "a").Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != 3 {
				t.Fatalf("v = %d, want 3 (migration ran twice or upsert failed)", v)
			}
		})
	}
}

// TestCheckpointInBackground: automatic checkpoints are off (they would run
// inside a big commit), so the loop must copy the WAL into the database file
// while the store is open.
func TestCheckpointInBackground(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: "sqlite"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, "test", []string{`CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`}); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES ($1, $2)`, i, strings.Repeat("x", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	size := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, "gridbell.db"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() < 200*1000 {
		if time.Now().After(deadline) {
			t.Fatalf("database file is %d bytes 10 s after 200 KB were written: the WAL was never checkpointed", size())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExecBatches(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			ctx := context.Background()
			if err := db.Migrate(ctx, "test", []string{`CREATE TABLE kv (k BIGINT PRIMARY KEY, v TEXT NOT NULL)`}); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{0, 1, 7, 8, 23} {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				var batches int
				err = store.ExecBatches(ctx, tx, n, 8, func(rows int) string {
					batches++
					return `INSERT INTO kv (k, v) VALUES ` + db.Values(rows, 2)
				}, func(args []any, from, to int) ([]any, error) {
					for i := from; i < to; i++ {
						args = append(args, n*100+i, strings.Repeat("x", i))
					}
					return args, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				var got int
				db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE k >= $1 AND k < $2`, n*100, n*100+100).Scan(&got)
				if got != n {
					t.Errorf("n=%d: %d rows stored", n, got)
				}
				if want := min(n/8, 1) + min(n%8, 1); batches != want {
					t.Errorf("n=%d: %d statements built, want %d (one prepared for full batches, one for the rest)", n, batches, want)
				}
			}
		})
	}
}

// TestMigrateTogether: instances cold-started at once on an empty store
// migrate the same components concurrently; each must succeed and every
// statement must run once.
func TestMigrateTogether(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			cfg := storetest.Config(t, driver)
			dir := t.TempDir()
			ctx := context.Background()
			components := map[string][]string{
				"a": {`CREATE TABLE a_kv (k TEXT PRIMARY KEY)`, `CREATE INDEX a_kv_k ON a_kv (k)`, `INSERT INTO a_kv (k) VALUES ('once')`},
				"b": {`CREATE TABLE b_kv (k TEXT PRIMARY KEY)`, `INSERT INTO b_kv (k) VALUES ('once')`},
				"c": {`CREATE TABLE c_kv (k TEXT PRIMARY KEY)`, `INSERT INTO c_kv (k) VALUES ('once')`},
			}
			const instances = 3
			errs := make(chan error, instances*len(components))
			var dbs []*store.DB
			for range instances {
				db, err := store.Open(ctx, cfg, dir)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				dbs = append(dbs, db)
			}
			start := make(chan struct{})
			for _, db := range dbs {
				for name, stmts := range components {
					go func() {
						<-start
						errs <- db.Migrate(ctx, name, stmts)
					}()
				}
			}
			close(start)
			for range instances * len(components) {
				if err := <-errs; err != nil {
					t.Errorf("concurrent migration failed: %v", err)
				}
			}
			for _, table := range []string{"a_kv", "b_kv", "c_kv"} {
				var n int
				if err := dbs[0].QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Errorf("%s holds %d rows, want 1: a migration ran more than once", table, n)
				}
			}
		})
	}
}

// TestMigrateRefusesNewerSchema: a binary that knows fewer migrations than
// the store holds must not run on it.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			ctx := context.Background()
			newer := []string{`CREATE TABLE kv (k TEXT PRIMARY KEY)`, `ALTER TABLE kv ADD COLUMN v TEXT`, `CREATE INDEX kv_v ON kv (v)`}
			if err := db.Migrate(ctx, "notify", newer); err != nil {
				t.Fatal(err)
			}
			err := db.Migrate(ctx, "notify", newer[:2])
			if !errors.Is(err, store.ErrSchemaNewer) {
				t.Fatalf("Migrate with 2 of 3 known migrations = %v, want ErrSchemaNewer", err)
			}
			for _, want := range []string{"notify", "version 3", "up to 2"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if err := db.Migrate(ctx, "rules", []string{`CREATE TABLE kv2 (k TEXT PRIMARY KEY)`}); err != nil {
				t.Errorf("another component with its own versions: %v", err)
			}
		})
	}
}
