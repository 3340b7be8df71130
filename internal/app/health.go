package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/internal/store"
)

// Health probes, for /readyz: whether the store commits, and whether the
// disk under data_dir has room.
const (
	probeEvery   = 2 * time.Second
	probeTimeout = 10 * time.Second
	// minFreeDisk is the free space under data_dir below which the disk
	// counts as full: SQLite, the spool and the outbox file need room to
	// write a batch.
	minFreeDisk = 8 << 20
)

var healthMigrations = []string{
	`CREATE TABLE app_health (id INTEGER PRIMARY KEY, at BIGINT NOT NULL)`,
}

// healthProbe writes one row every probeEvery and reads the free space
// under data_dir; Err says what is wrong. It comes back by itself.
type healthProbe struct {
	db      *store.DB
	dataDir string
	log     zerolog.Logger

	mu       sync.Mutex // guards storeErr, diskErr
	storeErr error
	diskErr  error

	free metrics.Gauge
}

func newHealthProbe(ctx context.Context, db *store.DB, dataDir string, log zerolog.Logger) (*healthProbe, error) {
	if err := db.Migrate(ctx, "health", healthMigrations); err != nil {
		return nil, err
	}
	h := &healthProbe{db: db, dataDir: dataDir, log: log,
		free: metrics.Default.Gauge("gridbell_data_dir_free_bytes", "free space on the file system under data_dir")}
	h.check(ctx)
	return h, nil
}

// Run probes until ctx ends.
func (h *healthProbe) Run(ctx context.Context) error {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			h.check(ctx)
		}
	}
}

func (h *healthProbe) check(ctx context.Context) {
	storeErr := h.probeStore(ctx)
	diskErr := h.probeDisk()
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	was := h.storeErr != nil || h.diskErr != nil
	h.storeErr, h.diskErr = storeErr, diskErr
	h.mu.Unlock()
	switch now := storeErr != nil || diskErr != nil; {
	case now && !was:
		h.log.Error().AnErr("store", storeErr).AnErr("disk", diskErr).Msg("not ready: the store or the disk is failing")
	case !now && was:
		h.log.Info().Msg("store and disk healthy again")
	}
}

func (h *healthProbe) probeStore(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO app_health (id, at) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET at = excluded.at`, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

func (h *healthProbe) probeDisk() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(h.dataDir, &st); err != nil {
		return fmt.Errorf("cannot read free space under data_dir: %w", err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	h.free.Set(float64(free))
	if free < minFreeDisk {
		return fmt.Errorf("disk full under data_dir %s: %d bytes free", h.dataDir, free)
	}
	return nil
}

// startFree is the free space under data_dir a start needs: minFreeDisk,
// below which the service is not ready, and room for the store's own
// writes: the WAL's working size (store.WALWorking) and, for a WAL a
// previous run left (a stop on a full disk), as much again, since copying
// it back into the database at open may grow the database by that much
// before the WAL is truncated.
func startFree(walLeft int64) int64 { return minFreeDisk + store.WALWorking + walLeft }

// startOnFullDisk turns err, a start's failure, into one that says how
// much space to free when the disk under dataDir is the cause: a store
// that refuses to write for want of room (store.WriteRefused) or ENOSPC,
// with less than startFree free. Other errors pass unchanged.
func startOnFullDisk(st store.Config, dataDir string, err error) error {
	if !store.WriteRefused(err) && !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(dataDir, &fs) != nil {
		return err
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	walLeft := store.SQLiteWAL(st, dataDir)
	need := startFree(walLeft)
	if free >= need {
		return err
	}
	return fmt.Errorf("cannot start: the disk under data_dir %s is full: %d bytes free, and a start needs %d (%d to be ready, %d for the store's WAL at work, %d for the WAL the last run left); free %d more bytes and start again: %w",
		dataDir, free, need, int64(minFreeDisk), int64(store.WALWorking), walLeft, need-free, err)
}

// Err reports nil while the store commits and the disk has room.
func (h *healthProbe) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.diskErr != nil:
		return h.diskErr
	case h.storeErr != nil:
		return fmt.Errorf("store cannot commit: %w", h.storeErr)
	}
	return nil
}
