// Package storetest opens fresh stores for tests: a SQLite file in a temp
// directory, and a PostgreSQL schema of its own on the server at
// 127.0.0.1:5432 (or GRIDBELL_TEST_PG). Run one suite over Backends.
package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/gridbell/gridbell/internal/store"
)

// Backends names the store drivers every store suite runs against.
var Backends = []string{"sqlite", "postgres"}

// PostgresDSN is the DSN of the test server.
func PostgresDSN() string {
	if dsn := os.Getenv("GRIDBELL_TEST_PG"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Open returns a fresh, empty store of the given driver, closed and dropped
// at the end of the test. Without a PostgreSQL server the test is skipped,
// except under CI=true where it fails.
func Open(t testing.TB, driver string) *store.DB {
	t.Helper()
	dataDir := t.TempDir()
	db, err := store.Open(context.Background(), Config(t, driver), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Config returns the configuration of a fresh, empty store of the given
// driver, for tests that open it themselves, or twice (a service and a
// second process on one store): SQLite's default file under the data_dir
// they pass, or a PostgreSQL schema of its own, dropped at the end of the
// test. Without a PostgreSQL server the test is skipped, except under
// CI=true where it fails.
func Config(t testing.TB, driver string) store.Config {
	t.Helper()
	if driver == "sqlite" {
		return store.Config{Driver: "sqlite"}
	}
	ctx := context.Background()
	admin, err := store.Open(ctx, store.Config{Driver: "postgres", DSN: PostgresDSN()}, "")
	if err != nil {
		Missing(t, "postgres", err)
		return store.Config{}
	}
	schema := fmt.Sprintf("t_%x", rand.Uint64())
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	})
	return store.Config{Driver: "postgres", DSN: PostgresDSN() + "&search_path=" + schema}
}

// Missing skips the test for a server that is not running, or fails it when
// CI=true: CI must have every server.
func Missing(t testing.TB, server string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true: %v", server, err)
	}
	t.Skipf("%s not available: %v", server, err)
}
