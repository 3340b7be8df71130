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
	"database/sql/driver"
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

	"github.com/gridbell/gridbell/internal/secret"
)

// Config is the store section of the configuration.
type Config struct {
	Driver string `yaml:"driver"` // sqlite or postgres
	DSN    string `yaml:"dsn"`    // empty sqlite DSN = <data_dir>/gridbell.db
}

// MarshalYAML prints the DSN with its password as *** (--print-config).
func (c Config) MarshalYAML() (any, error) {
	type plain Config
	p := plain(c)
	p.DSN = secret.MaskURL(p.DSN)
	return p, nil
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

// WALBound is the size the SQLite write-ahead log stays under: the
// checkpointer copies it back into the database and truncates it well
// before (see checkpointLoop). docs/reliability.md documents it.
const WALBound = 64 << 20

// WALWorking is the size up to which the SQLite WAL is left to grow before
// the checkpointer truncates it: room the store takes on disk at work.
const WALWorking = 8 << 20

// DB is an open store.
type DB struct {
	*sql.DB
	driver string

	wal       *walMonitor // SQLite on a file: its size; nil otherwise
	gateMu    sync.Mutex
	gate      chan struct{} // SQLite: open while a checkpoint holds new writers back; closed when it ends
	writers   *writeGate    // SQLite: in-process writers take turns, the urgent first (writegate.go)
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

// sqlitePath returns the SQLite DSN's path, under dataDir when relative or
// empty, and the database file it names ("" in memory).
func sqlitePath(dsn, dataDir string) (path, file string) {
	path = dsn
	if path == "" {
		path = "gridbell.db"
	}
	if path != ":memory:" && !strings.HasPrefix(path, "file:") && !filepath.IsAbs(path) {
		path = filepath.Join(dataDir, path)
	}
	if f, ok := strings.CutPrefix(path, "file:"); ok && !strings.Contains(f, "mode=memory") {
		file, _, _ = strings.Cut(f, "?")
	} else if !ok && path != ":memory:" {
		file = path
	}
	if file == ":memory:" {
		file = ""
	}
	return path, file
}

// SQLiteWAL returns the size of the WAL file of the SQLite store cfg
// names under dataDir, as a previous run left it (0: none, or not SQLite).
func SQLiteWAL(cfg Config, dataDir string) int64 {
	if cfg.Driver != "" && cfg.Driver != "sqlite" {
		return 0
	}
	_, file := sqlitePath(cfg.DSN, dataDir)
	if file == "" {
		return 0
	}
	fi, err := os.Stat(file + "-wal")
	if err != nil {
		return 0
	}
	return fi.Size()
}

func openSQLite(ctx context.Context, dsn, dataDir string) (*DB, error) {
	path, file := sqlitePath(dsn, dataDir)
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
	// before its callers hear it committed. journal_size_limit cuts the
	// WAL file back whenever a writer starts it over.
	path += sep + "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_pragma=wal_autocheckpoint(0)" +
		fmt.Sprintf("&_pragma=journal_size_limit(%d)", walKeep) + "&_txlock=immediate"
	sqldb, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, fmt.Errorf("cannot open sqlite store: %w", err)
	}
	sqldb.SetMaxOpenConns(4)
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("cannot open sqlite store %s: %w", path, err)
	}
	db := &DB{DB: sqldb, driver: "sqlite", writers: new(writeGate), stop: make(chan struct{}), stopped: make(chan struct{})}
	if file != "" {
		db.wal = newWALMonitor(file)
		// What a previous run left in the WAL (a crash, a stop on a full
		// disk) goes back into the database first: the start then writes
		// into an empty log.
		db.checkpoint(ctx, walWait)
	}
	go db.checkpointLoop(checkpointTick)
	return db, nil
}

// Checkpoints. A PASSIVE checkpoint copies what it can without waiting for
// anyone, but the WAL file only starts over when a checkpoint has copied
// all of it and no reader still reads from it: under steady readers (the
// API, the dispatcher) and writers that never happens, and the WAL grew
// without bound (335 MB for a 9.4 MB database in a 3,000-customer storm).
// So once the WAL passes walTruncateAt the checkpointer copies what it can
// beside the writer (PASSIVE), then asks for TRUNCATE, which waits (up to
// walWait; walUrgentWait past walUrgent, where the writers are outrunning
// it) for the writer and the readers to finish, copies the rest and cuts
// the file to zero. New write transactions wait for it meanwhile (see
// checkpoint). When a long reader keeps it from finishing, it tries again
// after a backoff of up to maxSkip ticks, so that the reader does not hold
// the writers back most of the time, but at every tick once the WAL passes
// walUrgent: the bound comes first.
const (
	checkpointTick = 250 * time.Millisecond
	passiveEvery   = 4 // ticks: a PASSIVE checkpoint each second
	walTruncateAt  = WALWorking
	walUrgent      = WALBound / 4
	walKeep        = 4 << 20 // journal_size_limit
	walWait        = 500 * time.Millisecond
	walUrgentWait  = 3 * time.Second
	maxSkip        = 4 // ticks
	checkpointTry  = 10 * time.Millisecond
	busyTimeoutMS  = 10000 // the pool's busy_timeout
)

// checkpointLoop watches the WAL's size every period and checkpoints (see
// above) until Close.
func (db *DB) checkpointLoop(period time.Duration) {
	defer close(db.stopped)
	t := time.NewTicker(period)
	defer t.Stop()
	ctx := context.Background()
	skip, left := 0, 0 // backoff after a checkpoint that did not finish, in ticks
	for n := 1; ; n++ {
		select {
		case <-db.stop:
			return
		case <-t.C:
		}
		var wal int64
		if db.wal != nil {
			_, wal = db.wal.sample()
		}
		switch {
		case wal >= walTruncateAt && (left == 0 || wal >= walUrgent):
			wait := walWait
			if wal >= walUrgent {
				wait = walUrgentWait
			}
			if db.checkpoint(ctx, wait) {
				skip = 0
			} else {
				skip = min(max(2*skip, 1), maxSkip)
			}
			left = skip
		case wal >= walTruncateAt:
			left--
		case n%passiveEvery == 0:
			// A failed passive checkpoint is retried on the next one.
			db.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// checkpoint runs a TRUNCATE checkpoint that waits at most wait for the
// writer and the readers, and reports whether it truncated the WAL; when
// they do not finish in time it copies what it can (as PASSIVE). Meanwhile
// BeginTx holds new write transactions back: SQLite's lock is not fair,
// and a writer that begins again right after its commit would otherwise
// win it every time.
func (db *DB) checkpoint(ctx context.Context, wait time.Duration) bool {
	c, err := db.Conn(ctx)
	if err != nil {
		return false
	}
	defer c.Close()
	// Most of the copying first, beside the writer: the writers are held
	// back only for what it wrote meanwhile.
	c.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	gate := make(chan struct{})
	db.gateMu.Lock()
	db.gate = gate
	db.gateMu.Unlock()
	defer func() {
		db.gateMu.Lock()
		db.gate = nil
		db.gateMu.Unlock()
		close(gate)
	}()
	// Short tries, repeated until wait has passed, rather than one try
	// with a busy timeout of wait: SQLite's busy handler sleeps in steps
	// of up to 100 ms, so a single try could notice the writer's commit or
	// the last reader's end that much late, with the writers held back.
	if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", checkpointTry.Milliseconds())); err != nil {
		return false
	}
	var busy, logFrames, copied int
	for deadline := time.Now().Add(wait); ; {
		err = c.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &copied)
		if err != nil || busy == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(checkpointTry)
	}
	if _, rerr := c.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeoutMS)); rerr != nil {
		// A connection with the short timeout must not go back to the
		// pool: its writers would give up early.
		c.Raw(func(any) error { return driver.ErrBadConn })
	}
	if db.wal != nil {
		db.wal.checkpointed(err, busy != 0)
	}
	return err == nil && busy == 0
}

// BeginTx starts a transaction as sql.DB's does; on SQLite a write
// transaction first waits for a checkpoint in progress (see checkpoint),
// at most walUrgentWait and the time to copy the WAL.
func (db *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	if db.stop != nil && (opts == nil || !opts.ReadOnly) {
		db.gateMu.Lock()
		gate := db.gate
		db.gateMu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return db.DB.BeginTx(ctx, opts)
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

// Size returns the bytes of a SQLite store's database file and its WAL
// (0, 0 for PostgreSQL or an in-memory database).
func (db *DB) Size() (dbBytes, walBytes int64) {
	if db.wal == nil {
		return 0, 0
	}
	return db.wal.sample()
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
