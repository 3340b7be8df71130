package rules

import (
	"context"
	"database/sql"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
)

// IntentSink receives intents inside the rules' transaction (implemented by
// notify's outbox). An error rolls the whole batch back.
type IntentSink interface {
	Enqueue(ctx context.Context, tx *sql.Tx, intents []event.Intent) error
}

// Directory is what the rules read of the customer registry
// (*contacts.Registry implements it).
type Directory interface {
	Meter(id string) (contacts.MeterInfo, bool)
	AreaMeters(area string) []string
	ConcentratorMeters(c string) []string
	FeederAreas(f string) []string
	Account(acct string) (contacts.Account, bool)
	Grid(g string) (contacts.GridInfo, bool)
	AccountsByPhone(e164 string) []string
}
