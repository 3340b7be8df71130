package store_test

import (
	"context"
	"testing"

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
