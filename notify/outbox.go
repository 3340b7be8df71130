package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/store"
)

// Directory is what notify needs of the contacts registry.
type Directory interface {
	Account(acct string) (contacts.Account, bool)
	AccountsByPhone(e164 string) []string
	SetVerdict(ctx context.Context, e164 string, v contacts.Verdict, reason string) error
	SetOptOut(ctx context.Context, e164 string, optOut bool) error
}

// The contacts registry is the Directory in production.
var _ Directory = (*contacts.Registry)(nil)

// Message states. A message is queued, then sending, then sent and finally
// delivered, undelivered or failed (Twilio's receipt); or it is held (quiet
// hours, rate limit: queued again when due), suppressed (policy) or
// rejected (the provider refused it for good, or retries ran out).
const (
	StatusPending     = "pending" // intent stored, not expanded yet
	StatusQueued      = "queued"
	StatusHeld        = "held"
	StatusSending     = "sending"
	StatusSent        = "sent"
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	StatusFailed      = "failed"
	StatusSuppressed  = "suppressed"
	StatusRejected    = "rejected"
)

var migrations = []string{
	`CREATE TABLE notify_intents (
		key TEXT PRIMARY KEY, kind TEXT NOT NULL, account TEXT NOT NULL, grid TEXT NOT NULL,
		to_phone TEXT NOT NULL, ref TEXT NOT NULL, vars TEXT NOT NULL, priority INTEGER NOT NULL,
		not_before BIGINT NOT NULL, created_at BIGINT NOT NULL, enqueued_at BIGINT NOT NULL,
		state TEXT NOT NULL)`,
	`CREATE INDEX notify_intents_pending ON notify_intents (state, not_before)`,
	`CREATE TABLE notify_messages (
		id TEXT PRIMARY KEY, msg_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, template TEXT NOT NULL,
		ref TEXT NOT NULL, phone TEXT NOT NULL, accounts TEXT NOT NULL, grid TEXT NOT NULL,
		lang TEXT NOT NULL, vars TEXT NOT NULL, body TEXT NOT NULL, priority INTEGER NOT NULL,
		status TEXT NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL, due_at BIGINT NOT NULL,
		queued_at BIGINT NOT NULL, claimed_at BIGINT NOT NULL, sent_at BIGINT NOT NULL,
		provider_id TEXT NOT NULL, updated_at BIGINT NOT NULL)`,
	`CREATE INDEX notify_messages_due ON notify_messages (status, priority, due_at)`,
	`CREATE INDEX notify_messages_phone ON notify_messages (phone, claimed_at)`,
	`CREATE INDEX notify_messages_provider ON notify_messages (provider_id)`,
	`CREATE TABLE notify_links (
		intent_key TEXT NOT NULL, phone TEXT NOT NULL, account TEXT NOT NULL, ref TEXT NOT NULL,
		message_id TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, created_at BIGINT NOT NULL,
		PRIMARY KEY (intent_key, phone))`,
	`CREATE INDEX notify_links_ref ON notify_links (ref)`,
	`CREATE INDEX notify_links_message ON notify_links (message_id)`,
	`CREATE TABLE notify_receipts (
		provider_id TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL, at BIGINT NOT NULL)`,
	// Expansion reads pending intents in creation order: walk an index in
	// that order instead of sorting every pending intent each batch.
	`CREATE INDEX notify_intents_order ON notify_intents (state, created_at, enqueued_at)`,
	`DROP INDEX notify_intents_pending`,
	// Planned reminders wait days in the table: read due intents by
	// not_before so those are never scanned, and still without a sort.
	`CREATE INDEX notify_intents_due ON notify_intents (state, not_before, created_at)`,
	`DROP INDEX notify_intents_order`,
	// Instances sharing the outbox: who is sending a message, and until
	// when its lease runs (unix ns) before another instance takes it back.
	`ALTER TABLE notify_messages ADD COLUMN claimed_by TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE notify_messages ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0`,
	// Twilio webhooks that took effect, by MessageSid (and status), so a
	// replayed one takes none (docs/interfaces.md §4).
	`CREATE TABLE notify_webhooks (key TEXT PRIMARY KEY, at BIGINT NOT NULL)`,
	// Operators read one customer's messages (the hotline, history.go)
	// and the last minutes' traffic (the storm overview).
	`CREATE INDEX notify_links_account ON notify_links (account, created_at)`,
	`CREATE INDEX notify_messages_queued ON notify_messages (queued_at)`,
	// A storm's intents, logged compactly in the rules' transaction and
	// unpacked into notify_intents by the dispatcher (intentlog.go).
	`CREATE TABLE notify_intent_log (id TEXT PRIMARY KEY, at BIGINT NOT NULL, n INTEGER NOT NULL, data BYTEA NOT NULL)`,
	// Which claim of its instance a sending message belongs to (claim.go):
	// a claim that lapsed, and the outcome of its sends, is told apart from
	// the claim that took the message over. lease_until is on the store's
	// clock from here on.
	`ALTER TABLE notify_messages ADD COLUMN claim_token TEXT NOT NULL DEFAULT ''`,
	// Customer care reads the messages sent since its last look
	// (FirstSent), not a storm's every message each time.
	`CREATE INDEX notify_messages_sent ON notify_messages (sent_at)`,
}

// claimLease is how long a claimed message stays with its instance without
// a renewal (every third of it): after that a surviving instance sends it.
// docs/deploy.md, distributed mode gives the others 30 s to carry a dead instance's share.
const claimLease = 15 * time.Second

// Outbox is the durable SMS outbox and its dispatcher.
type Outbox struct {
	cfg    Config
	qh     quietHours
	db     *store.DB
	dir    Directory
	sender Sender
	clk    clock.Clock
	log    zerolog.Logger
	tpl    *Templates
	pace   *pacer // nil = unpaced (the outbox file)

	instance string        // names this instance's claims; set before Run
	varsHook VarsHook      // set before Run; nil = none
	lease    time.Duration // claimLease; shorter in tests
	nonce    string        // tells this process's claims from an earlier run's of the same instance
	claims   atomic.Uint64 // numbers this process's claims

	kick        chan struct{}
	hasReceipts atomic.Bool
	lastLogAt   atomic.Int64 // the latest intent log row's time, unix ns (intentlog.go)
	logged      atomic.Bool  // the intent log may hold rows: unpack looks only then
	written     atomic.Int64 // intents written in bulk since the last ANALYZE (analyze.go)

	stmts sync.Map // query → *sql.Stmt prepared on db

	mu          sync.Mutex // guards pausedUntil
	pausedUntil time.Time  // a provider throttle pauses every claim

	errLog  logging.Throttle // dispatch errors, once per 10 s
	retries *retryLog
}

// NewOutbox migrates the notify tables, loads and validates the templates
// and returns an outbox that Run dispatches.
func NewOutbox(cfg Config, qh QuietHours, db *store.DB, dir Directory, sender Sender, clk clock.Clock, log zerolog.Logger) (*Outbox, error) {
	cfg.Defaults()
	qh.Defaults()
	if err := qh.Validate(); err != nil {
		return nil, err
	}
	q, err := newQuietHours(qh)
	if err != nil {
		return nil, err
	}
	tpl, err := LoadTemplates(cfg.TemplatesDir, q.loc)
	if err != nil {
		return nil, err
	}
	tpl.SetLimits(clk.Now, cfg.MaxSegments)
	if err := db.Migrate(context.Background(), "notify", migrations); err != nil {
		return nil, err
	}
	o := &Outbox{cfg: cfg, qh: q, db: db, dir: dir, sender: sender, clk: clk, log: log, tpl: tpl,
		kick:     make(chan struct{}, 1),
		instance: defaultInstance(),
		lease:    claimLease,
		nonce:    newNonce(),
		errLog:   logging.Throttle{Period: 10 * time.Second},
		retries:  newRetryLog(log),
	}
	o.logged.Store(true) // rows a stop left, or another instance's
	if cfg.Sender == "twilio" && cfg.Twilio.Rate > 0 {
		o.pace = newPacer(cfg.Twilio.Rate)
	}
	return o, nil
}

// ShareRate makes this outbox send at sms.twilio.rate / n, one of n
// instances sharing the Twilio account (distributed mode); n < 1 counts
// as 1. Without Twilio pacing it changes nothing.
func (o *Outbox) ShareRate(n int) {
	if o.pace == nil {
		return
	}
	o.pace.setRate(o.cfg.Twilio.Rate / float64(max(n, 1)))
}

// Rate is the sends a second this outbox allows itself: sms.twilio.rate,
// or its share (ShareRate); 0 when it does not pace (the outbox file).
func (o *Outbox) Rate() float64 {
	if o.pace == nil {
		return 0
	}
	return o.pace.rate()
}

// SetInstance names this instance in the messages it claims (docs/deploy.md, distributed mode
// cluster.instance, the host name by default). Call it before Run: at
// start the outbox sends again what an earlier run of the same name left
// in flight, so two running instances must not share a name.
func (o *Outbox) SetInstance(name string) {
	if name != "" {
		o.instance = name
	}
}

// VarsHook adds vars to a message as it is rendered: kind and ref are the
// message's, accounts its customers. Customer care sets recent_outages on
// an outage SMS this way.
type VarsHook func(kind, ref string, accounts []string, vars map[string]string)

// SetVarsHook makes every render call h. Call it before Run.
func (o *Outbox) SetVarsHook(h VarsHook) { o.varsHook = h }

func defaultInstance() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "gridbell"
}

// Kick wakes the dispatcher; the rules may call it after their commit.
func (o *Outbox) Kick() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

func checkIntent(in event.Intent) error {
	if in.Key == "" {
		return errors.New("cannot enqueue an intent without a key")
	}
	if !slices.Contains(event.Kinds, in.Kind) {
		return fmt.Errorf("cannot enqueue intent %s: unknown kind %q", in.Key, in.Kind)
	}
	if in.Account == "" && in.To == "" {
		return fmt.Errorf("cannot enqueue intent %s: neither account nor to is set", in.Key)
	}
	return nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
