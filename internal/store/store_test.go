package store_test

import (
	"context"
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
