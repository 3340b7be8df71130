package app_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// instanceConfig is the configuration of one gridbell process on the
// store sc, with a data directory and ports of its own.
func instanceConfig(t *testing.T, sc store.Config, extra ...string) *config.Config {
	t.Helper()
	cfg, err := config.Load("", append([]string{
		"GRIDBELL_DATA_DIR=" + t.TempDir(),
		"GRIDBELL_STORE_DRIVER=" + sc.Driver,
		"GRIDBELL_STORE_DSN=" + sc.DSN,
		"GRIDBELL_HTTP_LISTEN=" + freePort(t),
		"GRIDBELL_MQTT_EMBEDDED_LISTEN=" + freePort(t),
	}, extra...))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSecondInstanceRefused: a second single-process gridbell started on a
// store another one runs on refuses to start and says who holds it; the
// CLI's contacts import still works beside the running one; once the first
// stops, a new one starts at once.
func TestSecondInstanceRefused(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			sc := storetest.Config(t, driver)
			if driver == "sqlite" {
				sc.DSN = filepath.Join(t.TempDir(), "shared.db") // one file, two data directories
			}
			ctx := context.Background()
			log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
			first, err := app.New(ctx, instanceConfig(t, sc), log)
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- first.Run(runCtx) }()

			second, err := app.New(ctx, instanceConfig(t, sc), log)
			if err == nil {
				second.Run(canceled())
				t.Fatal("a second instance started beside a running one")
			}
			for _, want := range []string{"another gridbell is running on this store", first.Lease.Holder()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q does not say %q", err, want)
				}
			}

			// gridbell contacts import, beside the running service.
			db, err := store.Open(ctx, sc, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			reg, err := contacts.Open(ctx, db, zerolog.Nop())
			if err == nil {
				_, err = reg.Import(ctx, strings.NewReader(contactsCSV), nil)
			}
			db.Close()
			if err != nil {
				t.Errorf("contacts import beside a running service: %v", err)
			}

			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			third, err := app.New(ctx, instanceConfig(t, sc), log)
			if err != nil {
				t.Fatalf("after the first stopped: %v", err)
			}
			if err := third.Run(canceled()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
