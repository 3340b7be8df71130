// Package store opens gridbell's state store, SQLite (the embedded default)
// or PostgreSQL, and runs each component's schema migrations. Every stage
// (contacts, rules, notify) keeps its tables here; queries use $1-style
// placeholders and portable SQL so the same code runs on both, except
// statements with many parameters (multi-row INSERTs, IN lists), which use
// Values/Marks in each store's fastest style: "?" on SQLite.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// Config is the store section of the configuration.
type Config struct {
	Driver string `yaml:"driver"` // sqlite or postgres
	DSN    string `yaml:"dsn"`    // empty sqlite DSN = <data_dir>/gridbell.db
}

// Validate checks c without touching the network.
func (c Config) Validate() error {
	switch c.Driver {
	case "", "sqlite":
	case "postgres":
		if c.DSN == "" {
			return errors.New("store.dsn is required when store.driver is postgres")
		}
	default:
		return fmt.Errorf("store.driver %q is not sqlite or postgres", c.Driver)
	}
	return nil
}

// DB is an open store.
type DB struct {
	*sql.DB
	driver string

	gate      *writeGate    // SQLite: in-process writers take turns (writegate.go)
	stop      chan struct{} // SQLite: ends checkpointLoop
	stopped   chan struct{}
	closeOnce sync.Once
}

// Driver reports "sqlite" or "postgres".
func (db *DB) Driver() string { return db.driver }

// Postgres reports whether the store is PostgreSQL.
func (db *DB) Postgres() bool { return db.driver == "postgres" }

// Open opens the store described by cfg. A relative or empty SQLite DSN lives
// under dataDir.
func Open(ctx context.Context, cfg Config, dataDir string) (*DB, error) {
	switch cfg.Driver {
	case "postgres":
		sqldb, err := sql.Open("pgx", cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("cannot open postgres store: %w", err)
		}
		sqldb.SetMaxOpenConns(16)
		if err := sqldb.PingContext(ctx); err != nil {
			sqldb.Close()
			return nil, fmt.Errorf("cannot reach postgres store: %w", err)
		}
		return &DB{DB: sqldb, driver: "postgres"}, nil
	case "", "sqlite":
		return openSQLite(ctx, cfg.DSN, dataDir)
	}
	return nil, fmt.Errorf("unknown store driver %q", cfg.Driver)
}

func openSQLite(ctx context.Context, dsn, dataDir string) (*DB, error) {
	path := dsn
	if path == "" {
		path = "gridbell.db"
	}
	if path != ":memory:" && !strings.HasPrefix(path, "file:") && !filepath.IsAbs(path) {
		path = filepath.Join(dataDir, path)
	}
	if !strings.HasPrefix(path, "file:") && path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("cannot create store directory: %w", err)
		}
		if err := privateFile(path); err != nil {
			return nil, err
		}
		path = "file:" + path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	// WAL lets readers (the HTTP API) run beside the single writer;
	// immediate transactions avoid lock upgrades that fail under load.
	// Checkpoints run in the background (checkpointLoop), not inside the
	// commit that happens to pass the WAL's size limit: a storm's big
	// transaction would otherwise copy the WAL back into the database
	// before its callers hear it committed.
	path += sep + "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
	sqldb, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, fmt.Errorf("cannot open sqlite store: %w", err)
	}
	sqldb.SetMaxOpenConns(4)
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("cannot open sqlite store %s: %w", path, err)
	}
	db := &DB{DB: sqldb, driver: "sqlite", gate: new(writeGate), stop: make(chan struct{}), stopped: make(chan struct{})}
	go db.checkpointLoop(time.Second)
	return db, nil
}

// checkpointLoop copies the WAL back into the database every period without
// blocking readers or the writer (PASSIVE), until Close.
func (db *DB) checkpointLoop(period time.Duration) {
	defer close(db.stopped)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
			// A failed passive checkpoint is retried on the next tick;
			// the WAL only grows meanwhile.
			db.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// Close stops the checkpointer, checkpoints what is left and closes the store.
func (db *DB) Close() error {
	if db.stop != nil {
		db.closeOnce.Do(func() {
			close(db.stop)
			<-db.stopped
			db.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
		})
	}
	return db.DB.Close()
}

// privateFile creates the SQLite file at path readable by its owner only,
// or makes an existing one (and its WAL and shared-memory files) so: it
// holds every customer's phone numbers. SQLite gives the files it creates
// beside a database the database's mode.
func privateFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create sqlite store: %w", err)
	}
	defer f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot make the sqlite store private: %w", err)
		}
	}
	return nil
}
