package rules

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// Retention of the rules' history: finished outage records (restored,
// which a dispatcher's confirmation also leads to, or cancelled) closed
// before a cut-off go from the store (rules_outages, rules_told) and from
// memory, with the merged AMI records that only named them. Live records,
// and what their customers were told, are never touched.

// Prune drops up to batch finished outage records closed before before,
// with their told sets and the merged records absorbed into them, and
// reports how many records went. It runs as one step of the writer: the
// store's rows are deleted first, in a transaction of their own, and memory
// drops the records only once that commits, so state and store agree. A
// small batch keeps the writer's step short; call again while it returns
// batch or more (see PruneAll).
func (e *Engine) Prune(ctx context.Context, before time.Time, batch int) (int, error) {
	if e.forwarding() {
		return 0, nil // distributed mode: the instance running the rules prunes
	}
	var n int
	err := e.call(ctx, &request{fn: func() error {
		var err error
		n, err = e.prune(ctx, before, batch)
		return err
	}})
	return n, err
}

// pruneBatch is how many records one writer step drops at most.
const pruneBatch = 100

// PruneAll calls Prune until no more records are due, pausing between
// steps so the writer's callers go first. It returns how many records went.
func (e *Engine) PruneAll(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		n, err := e.Prune(ctx, before, pruneBatch)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return total, ctx.Err()
		case <-t.C:
		}
	}
}

// closedAt is when a finished record closed: restored, confirmed, or the
// OMS's last word (a cancellation).
func (r *outage) closedAt() time.Time {
	switch {
	case r.RestoredAt != nil:
		return *r.RestoredAt
	case r.ConfirmedAt != nil:
		return *r.ConfirmedAt
	case !r.OMSUpdated.IsZero():
		return r.OMSUpdated
	}
	return r.Created
}

// prune is Prune's step. Writer, e.mu held.
func (e *Engine) prune(ctx context.Context, before time.Time, batch int) (int, error) {
	if len(e.dirtyOutages) > 0 || len(e.dirtyLedger) > 0 || len(e.touched) > 0 {
		return 0, nil // this batch already changed records by index: next time
	}
	drop := make([]bool, len(e.outages))
	var ids []string
	n := 0
	for i, r := range e.outages {
		if n == batch {
			break
		}
		if (r.Status == statusRestored || r.Status == statusCancelled) && r.closedAt().Before(before) {
			drop[i] = true
			ids = append(ids, r.ID)
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	for i, r := range e.outages { // records merged into a dropped one, or into none
		if r.Status != statusMerged {
			continue
		}
		if o, ok := e.outageIdx[r.ID]; (ok && drop[o]) || (!ok && r.Created.Before(before)) {
			drop[i] = true
			ids = append(ids, r.ID)
		}
	}
	if err := e.deleteRecords(ctx, ids); err != nil {
		if e.fence != nil && errors.Is(err, store.ErrLeaseLost) {
			e.fencedOut(err, 0)
		}
		return 0, err
	}
	e.dropRecords(drop)
	return n, nil
}

// deleteRecords deletes the rows of records ids in one transaction, under
// the fence in distributed mode (a former holder prunes nothing).
func (e *Engine) deleteRecords(ctx context.Context, ids []string) error {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot prune outage records: %w", err)
	}
	defer tx.Rollback()
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	in := store.Marks(e.db.Postgres(), 0, len(ids))
	for _, q := range []string{
		`DELETE FROM rules_told WHERE outage IN (` + in + `)`,
		`DELETE FROM rules_outages WHERE id IN (` + in + `)`,
	} {
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("cannot prune outage records: %w", err)
		}
	}
	if e.fence != nil {
		if err := e.fence(ctx, tx, nil); err != nil {
			return fmt.Errorf("cannot prune outage records: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot prune outage records: %w", err)
	}
	return nil
}

// dropRecords removes the records marked in drop from memory and renumbers
// the rest: every index into e.outages (meters, areas, ids and aliases)
// follows. Writer, e.mu held, no record dirty in this batch.
func (e *Engine) dropRecords(drop []bool) {
	remap := make([]int32, len(e.outages))
	kept := make([]*outage, 0, len(e.outages))
	for i, r := range e.outages {
		if drop[i] {
			remap[i] = -1
			continue
		}
		remap[i] = int32(len(kept))
		r.idx = remap[i]
		kept = append(kept, r)
	}
	e.outages = kept
	for id, o := range e.outageIdx {
		if remap[o] < 0 {
			delete(e.outageIdx, id)
		} else {
			e.outageIdx[id] = remap[o]
		}
	}
	for i := range e.meters {
		if o := e.meters[i].outage; o >= 0 {
			e.meters[i].outage = remap[o]
		}
	}
	for i := range e.areas {
		if o := e.areas[i].rec; o >= 0 {
			e.areas[i].rec = remap[o]
		}
	}
}
