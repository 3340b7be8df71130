package contacts

import (
	"context"
	"strings"
	"testing"
	"time"

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

// TestStatesFollowed: an opt-out or a Twilio verdict one instance records
// is heeded by another sharing the store at its next poll, without an
// import; a poll with nothing new applies nothing.
func TestStatesFollowed(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			dbs := openShared(t, driver, 2)
			a := reopen(t, dbs[0])
			mustImport(t, a, firstFile)
			b := reopen(t, dbs[1])
			optedOut := func(r *Registry, acct string) bool {
				ac, _ := r.Account(acct)
				return ac.Contacts[0].OptOut
			}
			poll := func(r *Registry, want int) {
				t.Helper()
				if n, err := r.PollStates(ctx); err != nil || n != want {
					t.Fatalf("PollStates() = %d, %v; want %d", n, err, want)
				}
			}

			if err := a.SetOptOut(ctx, "+8613812345678", true); err != nil {
				t.Fatal(err)
			}
			if err := a.SetVerdict(ctx, "+8613987654321", Invalid, "twilio error 21211"); err != nil {
				t.Fatal(err)
			}
			if optedOut(b, "0100000001") {
				t.Fatal("the other instance saw the STOP before polling")
			}
			poll(b, 2)
			if !optedOut(b, "0100000001") {
				t.Error("STOP recorded by one instance not heeded by the other after a poll")
			}
			if ac, _ := b.Account("0100000002"); ac.Contacts[0].Verdict != Invalid {
				t.Errorf("verdict recorded by one instance: the other has %+v", ac.Contacts[0])
			}
			poll(b, 0)
			poll(a, 0) // its own changes

			// START from b; a follows on its own.
			if err := b.SetOptOut(ctx, "+8613812345678", false); err != nil {
				t.Fatal(err)
			}
			fctx, stop := context.WithCancel(ctx)
			defer stop()
			go a.FollowStates(fctx, 20*time.Millisecond)
			deadline := time.Now().Add(10 * time.Second)
			for optedOut(a, "0100000001") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if optedOut(a, "0100000001") {
				t.Error("START recorded by one instance not heeded by the following one within 10 s")
			}
		})
	}
}
