package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/cluster"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// TestFenceFrozenCommit: a rules holder that stands still inside its
// commit (after the fence's check, holding the lease row) does not keep a
// takeover waiting once its lease has lapsed: PostgreSQL ends the idle
// transaction, another instance takes the lease, and the frozen holder's
// commit fails when it goes on.
func TestFenceFrozenCommit(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, "postgres")
	if err := cluster.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	a, err := store.AcquireLease(ctx, db, cluster.RulesLease, "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := cluster.Fence("meters", a.Holder())(ctx, tx, map[int32]int64{0: 7}); err != nil {
		t.Fatalf("the holder's own fence: %v", err)
	}
	// a now stands still inside its commit, renewing nothing.
	took := make(chan error, 1)
	go func() {
		_, err := store.AcquireLease(ctx, db, cluster.RulesLease, "b", ttl)
		took <- err
	}()
	select {
	case err := <-took:
		if err != nil {
			t.Fatalf("the takeover: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the takeover waited on the frozen holder's commit")
	}
	if _, err := tx.ExecContext(ctx, `UPDATE cluster_commits SET n = n + 1 WHERE id = 1`); err == nil {
		if err := tx.Commit(); err == nil {
			t.Fatal("the frozen holder's commit went through after the takeover")
		}
	}
	offsets, err := cluster.Offsets(ctx, db, "meters")
	if err != nil {
		t.Fatal(err)
	}
	if len(offsets) != 0 {
		t.Fatalf("the frozen holder's offsets were stored: %v", offsets)
	}
	if n, err := cluster.Commits(ctx, db); err != nil || n != 0 {
		t.Fatalf("commits %d (%v), want 0", n, err)
	}
}
