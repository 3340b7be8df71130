package contacts

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// openShared opens n stores on one fresh store of driver, as n processes
// would: each with its own connections.
func openShared(t *testing.T, driver string, n int) []*store.DB {
	t.Helper()
	cfg := storetest.Config(t, driver)
	dir := t.TempDir()
	var dbs []*store.DB
	for range n {
		db, err := store.Open(context.Background(), cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	return dbs
}

// TestImportsTogether: instances started together on an empty store each
// migrate and import their contacts_file; every import must succeed with an
// id of its own (they collided on MAX(id)+1), and a registry opened later
// sees the last one.
func TestImportsTogether(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			const instances = 3
			dbs := openShared(t, driver, instances)
			errs := make(chan error, instances)
			start := make(chan struct{})
			for _, db := range dbs {
				go func() {
					<-start
					r, err := Open(context.Background(), db, zerolog.Nop())
					if err == nil {
						_, err = r.Import(context.Background(), strings.NewReader(firstFile), nil)
					}
					errs <- err
				}()
			}
			close(start)
			for range instances {
				if err := <-errs; err != nil {
					t.Errorf("instance started together with others: %v", err)
				}
			}
			var n, ids int
			if err := dbs[0].QueryRowContext(context.Background(), `SELECT COUNT(*), COUNT(DISTINCT id) FROM contacts_imports`).Scan(&n, &ids); err != nil {
				t.Fatal(err)
			}
			if n != instances || ids != instances {
				t.Errorf("contacts_imports holds %d imports with %d ids, want %d each", n, ids, instances)
			}
			checkLookups(t, reopen(t, dbs[0]))
		})
	}
}
