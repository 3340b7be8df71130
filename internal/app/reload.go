package app

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
)

// contactsReloader makes the running service see a contacts import done by
// another process (gridbell contacts import) on the same store: every
// interval it asks the registry whether the store holds a newer import, and
// the registry swaps in a new index when it does. The rules engine follows
// the registry's generation on its own.
type contactsReloader struct {
	reg   *contacts.Registry
	every time.Duration
	log   zerolog.Logger
}

func newContactsReloader(reg *contacts.Registry, every time.Duration, log zerolog.Logger) *contactsReloader {
	return &contactsReloader{reg: reg, every: every, log: log}
}

// Run checks every interval until ctx is done. A failed check is logged and
// tried again at the next one: the registry keeps its current index.
func (c *contactsReloader) Run(ctx context.Context) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.check(ctx)
		}
	}
}

func (c *contactsReloader) check(ctx context.Context) {
	began := time.Now()
	changed, err := c.reg.Refresh(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		c.log.Warn().Err(err).Msg("cannot check for a newer contacts import; keeping the loaded contacts")
	case changed:
		c.log.Info().Int("meters", c.reg.Len()).Int("accounts", c.reg.Accounts()).
			Uint64("generation", c.reg.Generation()).Dur("took", time.Since(began)).Msg("contacts reloaded")
	}
}
