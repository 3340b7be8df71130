package app

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// Retention tuning: pruning runs off the hot path, a few hundred rows a
// statement with pauses between (see Outbox.Prune).
const (
	retentionEvery = 10 * time.Minute
	retentionBatch = 500
)

// retention prunes finished SMS rows, finished outage records and dead
// letters older than age.
type retention struct {
	age    time.Duration
	outbox *notify.Outbox
	rules  *rules.Engine
	dead   *ingest.DeadLetters
	log    zerolog.Logger
	pruned metrics.Counter
}

func newRetention(age time.Duration, o *notify.Outbox, r *rules.Engine, d *ingest.DeadLetters, log zerolog.Logger) *retention {
	return &retention{age: age, outbox: o, rules: r, dead: d, log: log,
		pruned: metrics.Default.Counter("gridbell_retention_pruned_total", "rows pruned for being older than retention (finished SMS, their links and receipts, finished outage records, dead letters)")}
}

// Run prunes a minute after start, then every retentionEvery.
func (r *retention) Run(ctx context.Context) error {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r.once(ctx)
		t.Reset(retentionEvery)
	}
}

func (r *retention) once(ctx context.Context) {
	before := time.Now().Add(-r.age)
	n, err := r.outbox.Prune(ctx, before, retentionBatch)
	if err == nil {
		var d int64
		d, err = r.dead.Prune(ctx, before, retentionBatch)
		n += d
	}
	if err == nil && r.rules != nil {
		var o int
		o, err = r.rules.PruneAll(ctx, before)
		n += int64(o)
	}
	r.pruned.Add(float64(n))
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.Warn().Err(err).Int64("pruned", n).Msg("cannot prune old rows; trying again later")
	case n > 0:
		r.log.Info().Int64("pruned", n).Time("before", before).Msg("old SMS rows, outage records and dead letters pruned")
	}
}
