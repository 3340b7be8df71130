package notify

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/logging"
)

// Dispatcher tuning.
const (
	pollEvery   = 20 * time.Millisecond // how often due work is looked for while there is some about
	hotFor      = time.Second           // "about": this long after a kick or after work was found
	idlePoll    = time.Second           // how often an idle dispatcher looks anyway (see dispatchLoop)
	depthEvery  = time.Second           // how often the queue depth gauge is refreshed
	recordBatch = 256                   // outcomes recorded in one transaction
	// inflightPerWorker sizes claims: bigger claims mean fewer write
	// transactions, and at most this many messages per worker can be sent
	// twice after a crash (sent, not yet recorded).
	inflightPerWorker = 8
	// fenceLoops check claims before their sends (fence.go): a few at once,
	// so that the workers do not queue behind one statement's round trip.
	fenceLoops = 2
)

// claimed is one message handed to a worker.
type claimed struct {
	Message
	attempts int
	priority int
	due      int64  // unix ns
	token    string // the claim it was taken under (markSending)
}

// outcome is what a worker learnt about one message.
type outcome struct {
	claimed
	res Result
	err error
}

// Run dispatches until ctx is cancelled: it expands due intents, claims due
// messages in priority order, sends them with cfg.Workers workers at the
// configured rate and records each outcome. Messages a crash left
// "sending" are queued again first, as attempts of unknown outcome: Twilio
// is asked for each before it is sent again, so one that did reach it is
// not sent twice (the outbox file sender has no such lookup: there, those in
// flight at the crash may go twice).
// Instances may share the outbox: each claims other messages, holds them
// under a lease it renews, and takes back those of a peer whose lease
// lapsed (keepLeases).
// On cancel, in-flight sends finish and are recorded before Run returns.
func (o *Outbox) Run(ctx context.Context) error {
	if err := o.resume(ctx); err != nil {
		return err
	}
	inflightCap := o.cfg.Workers * inflightPerWorker
	if o.pace != nil {
		// Claim about a second of paced sends ahead, no more: a critical
		// message that arrives later must not queue behind a long claim.
		inflightCap = min(inflightCap, max(o.cfg.Workers, int(o.cfg.Twilio.Rate)))
	}
	ev := o.log.Info().Str("sender", o.cfg.Sender).Int("workers", o.cfg.Workers).Int("in_flight", inflightCap)
	if o.pace != nil {
		ev = ev.Float64("rate", o.cfg.Twilio.Rate)
	}
	ev.Msg("sms dispatcher started")
	jobs := make(chan claimed, inflightCap)
	results := make(chan outcome, inflightCap)
	var inflight atomic.Int64
	// Sends and records outlive ctx so that a stop never strands a message.
	bg := context.WithoutCancel(ctx)
	fences := make(chan fenceReq)
	var workers, writer, fencing sync.WaitGroup
	for range fenceLoops {
		fencing.Go(func() { o.fenceLoop(bg, fences) })
	}
	for range o.cfg.Workers {
		workers.Go(func() {
			for c := range jobs {
				results <- o.deliver(bg, c, fences)
			}
		})
	}
	writer.Go(func() { o.recordLoop(ctx, bg, results, &inflight) })
	o.dispatchLoop(ctx, jobs, &inflight, inflightCap)
	close(jobs)
	workers.Wait()
	close(fences)
	fencing.Wait()
	close(results)
	writer.Wait()
	return nil
}

// resume queues again what this instance left "sending" when it stopped
// (a crash, or a stop that could not record), and what any instance left
// with a lapsed lease. A live peer's messages are left to it.
func (o *Outbox) resume(ctx context.Context) error {
	n, err := o.requeue(ctx, `(claimed_by = $5 OR lease_until < `+o.db.NowSQL()+`)`, "resumed after restart; claimed by ",
		o.instance)
	if err != nil {
		return fmt.Errorf("cannot resume the outbox: %w", err)
	}
	if n > 0 {
		o.log.Warn().Int("messages", n).Msg("messages in flight at the last stop are queued again; each is looked up at the provider before it is sent again")
	}
	return nil
}

// dispatchLoop steps while there is work. Idle, it waits for a kick (an
// Enqueue, a recorded batch), for the next intent or message due, or for
// idlePoll, whichever comes first. For hotFor after a kick or after work
// was found it looks every pollEvery: Enqueue kicks before its caller
// commits, so the intents may only become visible a little later. The
// idlePoll look finds what no kick announced (another instance's work, an
// intent committed after its kick's hot spell); nothing is lost by a
// missed kick, only delayed by up to idlePoll.
func (o *Outbox) dispatchLoop(ctx context.Context, jobs chan<- claimed, inflight *atomic.Int64, inflightCap int) {
	timer := time.NewTimer(pollEvery)
	defer timer.Stop()
	var lastDepth, lastNotice, lastLease time.Time
	depthWait := depthEvery
	hot := time.Now()
	for {
		busy, worked := o.step(ctx, jobs, inflight, inflightCap)
		if worked {
			hot = time.Now()
		}
		switch {
		case time.Since(lastDepth) >= depthWait:
			t0 := time.Now()
			o.refreshDepth(ctx)
			lastDepth, lastNotice = time.Now(), time.Now()
			depthWait = max(depthEvery, countShare*lastDepth.Sub(t0))
		case time.Since(lastNotice) >= depthEvery:
			lastNotice = time.Now()
			o.noticeLogged(ctx)
		}
		if time.Since(lastLease) >= o.lease/3 {
			lastLease = time.Now()
			if err := o.keepLeases(ctx); err != nil {
				o.logErr(ctx, err)
			}
		}
		if busy {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		wait := pollEvery
		if time.Since(hot) > hotFor {
			wait = o.untilDue(ctx)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-o.kick:
			hot = time.Now()
		}
	}
}

// untilDue returns how long an idle dispatcher may wait: until the next
// pending intent or queued or held message is due, within pollEvery..idlePoll.
func (o *Outbox) untilDue(ctx context.Context) time.Duration {
	var intent, msg, logged sql.NullInt64
	err := o.db.QueryRowContext(ctx, `SELECT (SELECT MIN(not_before) FROM notify_intents WHERE state = $1),
		(SELECT MIN(due_at) FROM notify_messages WHERE status IN ($2, $3)),
		(SELECT MIN(at) FROM notify_intent_log WHERE n >= 0)`, StatusPending, StatusQueued, StatusHeld).Scan(&intent, &msg, &logged)
	if err != nil {
		return pollEvery // the store is failing: the next step logs it
	}
	if logged.Valid { // another instance's rules logged intents: unpack them now
		o.logged.Store(true)
		return pollEvery
	}
	wait := idlePoll
	for _, due := range []sql.NullInt64{intent, msg} {
		if due.Valid {
			wait = min(wait, time.Duration(due.Int64-o.clk.Now().UnixNano()))
		}
	}
	return max(wait, pollEvery)
}

// step unpacks a row of the intent log, expands and claims once; it reports
// whether there may be more to do at once (busy), and whether it found
// anything to do at all (worked).
func (o *Outbox) step(ctx context.Context, jobs chan<- claimed, inflight *atomic.Int64, inflightCap int) (busy, worked bool) {
	u, err := o.unpack(ctx)
	if err != nil {
		o.logErr(ctx, err)
	}
	busy, worked = o.expandAndClaim(ctx, jobs, inflight, inflightCap)
	return busy || u > 0, worked || u > 0 // after a row unpacked, more may be logged
}

func (o *Outbox) expandAndClaim(ctx context.Context, jobs chan<- claimed, inflight *atomic.Int64, inflightCap int) (busy, worked bool) {
	n, err := o.expand(ctx)
	if err != nil {
		o.logErr(ctx, err)
		return false, false
	}
	free := inflightCap - int(inflight.Load())
	if free <= 0 || o.paused() {
		return n == expandBatch, n > 0 || free <= 0
	}
	if ctx.Err() != nil {
		return false, n > 0
	}
	// A claim marks rows sending and must reach the workers whole: a stop
	// that cancelled its commit half-way (PostgreSQL may commit while the
	// client sees the cancel) would strand them until the next start.
	cs, err := o.claim(context.WithoutCancel(ctx), free)
	if err != nil {
		o.logErr(ctx, err)
		return false, n > 0
	}
	inflight.Add(int64(len(cs)))
	for _, c := range cs {
		jobs <- c
	}
	return n == expandBatch || len(cs) == free, n > 0 || len(cs) > 0
}

func (o *Outbox) logErr(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	if ok, held := o.errLog.Allow(); ok {
		o.log.Error().Err(err).Int("also_failed", held).Msg("outbox dispatch failed; retrying")
	}
}

func (o *Outbox) paused() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.clk.Now().Before(o.pausedUntil)
}

func (o *Outbox) pauseFor(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if until := o.clk.Now().Add(d); until.After(o.pausedUntil) {
		o.pausedUntil = until
	}
}

// countShare bounds the time the dispatcher spends counting the queue
// (refreshDepth) to a twentieth of its own: the counts scan the outbox, and
// in a storm's millions of rows they took a second each, every second, on
// the store the senders and the rules need. Between counts, noticeLogged
// keeps the once-a-second look at the intent log.
const countShare = 20

// noticeLogged sets the hint that the intent log holds rows (Outbox.logged)
// when it does: another instance's rules may have logged them.
func (o *Outbox) noticeLogged(ctx context.Context) {
	if ok, err := o.logHasRows(ctx); err == nil && ok {
		o.logged.Store(true)
	}
}

// refreshDepth counts the queue by state for gridbell_sms_queue_depth.
func (o *Outbox) refreshDepth(ctx context.Context) {
	depth := map[string]float64{StatusPending: 0, StatusQueued: 0, StatusHeld: 0, StatusSending: 0}
	var pending, logged int64
	if err := o.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM notify_intents WHERE state = $1),
		(SELECT COALESCE(SUM(n), 0) FROM notify_intent_log WHERE n >= 0)`, StatusPending).Scan(&pending, &logged); err != nil {
		return
	}
	if logged > 0 {
		o.logged.Store(true) // another instance's rules may have logged them
	}
	depth[StatusPending] = float64(pending + logged)
	rows, err := o.db.QueryContext(ctx, `SELECT status, COUNT(*) FROM notify_messages WHERE status IN ($1, $2, $3) GROUP BY status`,
		StatusQueued, StatusHeld, StatusSending)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int64
		if rows.Scan(&st, &n) != nil {
			return
		}
		depth[st] = float64(n)
	}
	if rows.Err() != nil {
		return
	}
	for st, n := range depth {
		queueDepth.WithLabelValues(st).Set(n)
	}
}

// deliver sends one message; it runs on a worker. Right before the send it
// checks that the message's claim is still this instance's (fences, see
// checkClaim), and the send must end within the claim's lease: a message
// goes out under a live claim, or not at all.
func (o *Outbox) deliver(ctx context.Context, c claimed, fences chan<- fenceReq) outcome {
	if o.pace != nil {
		if err := o.pace.wait(ctx); err != nil {
			return outcome{claimed: c, err: err}
		}
	}
	until, err := o.checkClaim(ctx, c, fences)
	if err != nil {
		return outcome{claimed: c, err: err}
	}
	sctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	m := c.Message
	m.Attempts = c.attempts
	t0 := time.Now()
	res, err := o.sender.Send(sctx, m)
	observeSend(time.Since(t0), err)
	return outcome{claimed: c, res: res, err: err}
}

// recordLoop records outcomes in batches, one transaction each, under ctx
// (which outlives the run). While the store fails it holds the batch and
// retries; once the run is stopped it gives up after a few tries, and the
// next start queues those messages again.
func (o *Outbox) recordLoop(run, ctx context.Context, results <-chan outcome, inflight *atomic.Int64) {
	for first := range results {
		batch := []outcome{first}
	fill:
		for len(batch) < recordBatch {
			select {
			case r, ok := <-results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		for try := 1; ; try++ {
			err := o.record(ctx, batch)
			if err == nil {
				break
			}
			if run.Err() != nil && try >= 5 {
				o.log.Error().Err(err).Int("messages", len(batch)).Msg("cannot record sends at stop; they are sent again at the next start")
				break
			}
			o.logErr(ctx, err)
			time.Sleep(100 * time.Millisecond) // the store is down: hold the batch
		}
		inflight.Add(-int64(len(batch)))
		o.Kick()
	}
}

// verdictNote is a lesson about a number to pass to the directory after commit.
type verdictNote struct {
	phone   string
	verdict contacts.Verdict
	optOut  bool
	reason  string
}

// record stores the outcomes of one batch: sent, rejected for good, or
// queued again for a retry.
func (o *Outbox) record(ctx context.Context, outs []outcome) error {
	now := o.clk.Now()
	tx, err := o.begin(ctx)
	if err != nil {
		return fmt.Errorf("cannot record sends: %w", err)
	}
	defer tx.Rollback()
	var notes []verdictNote
	var counts [][2]string
	var sent []outcome
	for _, r := range outs {
		if r.err == nil {
			sent = append(sent, r)
			continue
		}
		status, note, err := o.recordOne(ctx, tx, r, now)
		if err != nil {
			return fmt.Errorf("cannot record message %s: %w", r.ID, err)
		}
		counts = append(counts, [2]string{string(r.Kind), status})
		if note != nil {
			notes = append(notes, *note)
		}
	}
	landed, err := recordSent(ctx, tx, sent, now)
	if err != nil {
		return err
	}
	for _, r := range sent {
		status := StatusSent
		if !landed[r.ID] {
			status = statusLapsed
		}
		counts = append(counts, [2]string{string(r.Kind), status})
	}
	if len(landed) < len(sent) {
		kept := make([]outcome, 0, len(landed))
		for _, r := range sent {
			if landed[r.ID] {
				kept = append(kept, r)
			}
		}
		o.log.Warn().Int("messages", len(sent)-len(kept)).Msg("sent messages whose claim lapsed and passed to another instance; not recorded over it")
		sent = kept
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit sends: %w", err)
	}
	// Receipts that beat this record: applied after the commit, so one
	// stored while the commit was in flight is seen here or by the
	// receipt's own apply (webhook.go), whichever comes last.
	if o.hasReceipts.Load() {
		if err := applyReceipts(ctx, o.db); err != nil {
			o.logErr(ctx, fmt.Errorf("cannot apply early delivery receipts; the next record tries again: %w", err))
		}
	}
	for _, c := range counts {
		count(c[0], c[1])
	}
	observeSent(sent, now)
	for _, n := range notes {
		o.learn(ctx, n)
	}
	return nil
}

// recordSent marks messages sent, many per statement: at thousands a second
// one UPDATE each costs more than the sends. Only messages whose claim is
// still the one they were sent under are marked (an instance that stood
// still past its lease records nothing over the one that took them over);
// it returns their ids.
func recordSent(ctx context.Context, tx *cachedTx, sent []outcome, now time.Time) (map[string]bool, error) {
	const chunk = 64
	landed := make(map[string]bool, len(sent))
	for start := 0; start < len(sent); start += chunk {
		part := sent[start:min(start+chunk, len(sent))]
		args := []any{StatusSent, now.UnixNano(), StatusSending}
		var at, pid, tok, ids strings.Builder
		for i, r := range part {
			sentAt := r.res.SentAt
			if sentAt.IsZero() {
				sentAt = now
			}
			n := len(args)
			args = append(args, r.ID, sentAt.UnixNano(), r.res.ProviderID, r.token)
			fmt.Fprintf(&at, " WHEN $%d THEN CAST($%d AS BIGINT)", n+1, n+2)
			fmt.Fprintf(&pid, " WHEN $%d THEN CAST($%d AS TEXT)", n+1, n+3)
			fmt.Fprintf(&tok, " WHEN $%d THEN CAST($%d AS TEXT)", n+1, n+4)
			if i > 0 {
				ids.WriteByte(',')
			}
			fmt.Fprintf(&ids, "$%d", n+1)
		}
		q := `UPDATE notify_messages SET status = $1, reason = '', attempts = attempts + 1, updated_at = $2,
			sent_at = CASE id` + at.String() + ` END, provider_id = CASE id` + pid.String() + ` END
			WHERE id IN (` + ids.String() + `) AND status = $3 AND claim_token = CASE id` + tok.String() + ` END RETURNING id`
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("cannot mark messages sent: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("cannot mark messages sent: %w", err)
			}
			landed[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("cannot mark messages sent: %w", err)
		}
	}
	return landed, nil
}

// recordOne records a failed send: rejected for good, or queued for a
// retry; or a message never sent, queued again. Each takes effect only
// while the claim it was sent under is still this instance's (ours);
// otherwise its status is statusLapsed and nothing is written.
func (o *Outbox) recordOne(ctx context.Context, tx execer, r outcome, now time.Time) (string, *verdictNote, error) {
	var perm *PermanentError
	var throttle *ThrottleError
	lapsed := func(err error) (string, *verdictNote, error) { return statusLapsed, nil, err }
	switch {
	case errors.Is(r.err, errNotSent):
		ok, err := ours(ctx, tx, r, `UPDATE notify_messages SET status = $1, reason = $2, claimed_by = '', claim_token = '', lease_until = 0,
			updated_at = $3 WHERE id = $4`, StatusQueued, truncate(r.err.Error(), 200), now.UnixNano(), r.ID)
		if !ok || err != nil {
			return lapsed(err)
		}
		return "retried", nil, nil
	case errors.As(r.err, &perm):
		reason := fmt.Sprintf("code %d: %s", perm.Code, perm.Message)
		ok, err := ours(ctx, tx, r, `UPDATE notify_messages SET status = $1, reason = $2, attempts = attempts + 1, updated_at = $3
			WHERE id = $4`, StatusRejected, reason, now.UnixNano(), r.ID)
		if !ok || err != nil {
			return lapsed(err)
		}
		if perm.Verdict == "" && !perm.OptOut {
			return StatusRejected, nil, nil
		}
		note := &verdictNote{phone: r.To, verdict: perm.Verdict, optOut: perm.OptOut, reason: fmt.Sprintf("twilio error %d", perm.Code)}
		return StatusRejected, note, suppressPhone(ctx, tx, r.To, noteReason(note), now)
	case errors.As(r.err, &throttle):
		o.pauseFor(throttle.RetryAfter)
		due := now.Add(retryDelay(1, throttle.RetryAfter))
		ok, err := ours(ctx, tx, r, `UPDATE notify_messages SET status = $1, reason = $2, due_at = $3, updated_at = $4 WHERE id = $5`,
			StatusQueued, "throttled by provider", due.UnixNano(), now.UnixNano(), r.ID)
		if !ok || err != nil {
			return lapsed(err)
		}
		o.retries.note(retryThrottle, r, throttle.RetryAfter)
		return "retried", nil, nil
	}
	attempts := r.attempts + 1
	class, wait := retryTransient, retryDelay(attempts, 0)
	if unknownOutcome(r.err) {
		// Give the provider time to finish what it may be creating: the
		// retry looks the message up first (Message.Attempts).
		class, wait = retryUnknown, max(wait, o.cfg.Twilio.Timeout)
	}
	if attempts >= o.cfg.MaxAttempts {
		ok, err := ours(ctx, tx, r, `UPDATE notify_messages SET status = $1, reason = $2, attempts = $3, updated_at = $4 WHERE id = $5`,
			StatusRejected, fmt.Sprintf("gave up after %d attempts: %v", attempts, r.err), attempts, now.UnixNano(), r.ID)
		if !ok || err != nil {
			return lapsed(err)
		}
		o.retries.note(class, r, wait)
		return StatusRejected, nil, nil
	}
	due := now.Add(wait)
	ok, err := ours(ctx, tx, r, `UPDATE notify_messages SET status = $1, reason = $2, attempts = $3, due_at = $4, updated_at = $5
		WHERE id = $6`, StatusQueued, truncate("retry: "+r.err.Error(), 200), attempts, due.UnixNano(), now.UnixNano(), r.ID)
	if !ok || err != nil {
		return lapsed(err)
	}
	o.retries.note(class, r, wait)
	return "retried", nil, nil
}

func noteReason(n *verdictNote) string {
	if n.optOut {
		return "opted out"
	}
	if n.verdict == contacts.Landline {
		return "landline"
	}
	return "invalid number"
}

// suppressPhone suppresses every unsent message to phone.
func suppressPhone(ctx context.Context, tx execer, phone, reason string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE notify_messages SET status = $1, reason = $2, updated_at = $3
		WHERE phone = $4 AND status IN ($5, $6)`, StatusSuppressed, reason, now.UnixNano(), phone, StatusQueued, StatusHeld)
	return err
}

// learn tells the directory what the provider said of a number; the
// registry counts it against the number's grid.
func (o *Outbox) learn(ctx context.Context, n verdictNote) {
	var err error
	if n.optOut {
		err = o.dir.SetOptOut(ctx, n.phone, true)
	} else {
		err = o.dir.SetVerdict(ctx, n.phone, n.verdict, n.reason)
	}
	ev := o.log.Info()
	if err != nil {
		ev = o.log.Error().Err(err)
	}
	ev.Str("phone", logging.Phone(n.phone)).Str("verdict", noteReason(&n)).Msg("number marked from provider error")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// runOnce expands, claims and sends everything due, one message at a time
// and in claim order, then records it. Tests use it with a fake clock.
func (o *Outbox) runOnce(ctx context.Context) (int, error) {
	total := 0
	for {
		if _, err := o.unpack(ctx); err != nil {
			return total, err
		}
		if _, err := o.expand(ctx); err != nil {
			return total, err
		}
		if o.paused() {
			return total, nil
		}
		cs, err := o.claim(ctx, 1000)
		if err != nil || len(cs) == 0 {
			return total, err
		}
		outs := make([]outcome, len(cs))
		for i, c := range cs {
			outs[i] = o.deliver(ctx, c, nil)
		}
		if err := o.record(ctx, outs); err != nil {
			return total, err
		}
		total += len(cs)
	}
}
