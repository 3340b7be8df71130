package rules

import (
	"context"
	"fmt"
)

// StillDarkError refuses a confirmation without a reason while meters of
// the outage are still dark (docs/interfaces.md §6: 409 unless the body gives a reason).
type StillDarkError struct {
	Outage string
	Dark   int // customers with a meter still dark
}

func (e *StillDarkError) Error() string {
	return fmt.Sprintf("cannot confirm outage %s: %d customers still dark; give a reason to confirm anyway", e.Outage, e.Dark)
}

// ConfirmWithReason is Confirm that refuses, with a *StillDarkError, while
// any customer of the outage is still dark and reason is empty. The check
// and the confirmation happen under one lock, so no meter can go dark
// between them. A confirmation with dark meters keeps the outage on the
// needs-attention list (Outage.NeedsAttention) until they come back.
func (e *Engine) ConfirmWithReason(ctx context.Context, id, by, reason string) error {
	if e.forwarding() {
		return e.confirmRemote(ctx, id, by, reason)
	}
	return e.call(ctx, &request{fn: func() error {
		o, ok := e.outageIdx[id]
		if !ok {
			return fmt.Errorf("cannot confirm outage %s: %w", id, ErrNotFound)
		}
		r := e.outages[o]
		if dark := e.view(r, nil).Counts.Dark; dark > 0 && reason == "" {
			return &StillDarkError{Outage: r.ID, Dark: dark}
		}
		r.ConfirmReason = reason
		return e.confirm(r, by)
	}})
}
