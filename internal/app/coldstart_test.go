package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// TestColdStartTogether: three processes opening every component on one
// empty PostgreSQL database at once (docs/deploy.md, distributed mode) all succeed. Each
// component's migrations used to race: duplicate keys in
// schema_migrations, pg_type and the contacts import id.
func TestColdStartTogether(t *testing.T) {
	sc := storetest.Config(t, "postgres")
	const instances = 3
	ctx := context.Background()
	errs := make(chan error, instances)
	start := make(chan struct{})
	for range instances {
		db, err := store.Open(ctx, sc, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		go func() {
			<-start
			errs <- openComponents(ctx, db)
		}()
	}
	close(start)
	for range instances {
		if err := <-errs; err != nil {
			t.Errorf("instance started together with others: %v", err)
		}
	}
}

// openComponents opens, on db, every component that migrates the store,
// and imports the contacts, as gridbell run does at start.
func openComponents(ctx context.Context, db *store.DB) error {
	log := zerolog.Nop()
	reg, err := contacts.Open(ctx, db, log)
	if err != nil {
		return err
	}
	if _, err := reg.Import(ctx, strings.NewReader(contactsCSV), nil); err != nil {
		return err
	}
	o, err := notify.NewOutbox(notify.Config{}, notify.QuietHours{}, db, reg, nil, clock.Real{}, log)
	if err != nil {
		return err
	}
	if _, err := rules.New(rules.Config{}, db, reg, o, clock.Real{}, log); err != nil {
		return err
	}
	_, err = ingest.OpenDeadLetters(ctx, db, ingest.Limits{})
	return err
}
