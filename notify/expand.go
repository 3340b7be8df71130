package notify

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
)

// expandBatch is how many intents one expansion transaction takes.
const expandBatch = 500

// msgRow is one stored message while the expander works on it.
type msgRow struct {
	id, key, kind, template, ref, phone, grid, lang, status, reason string
	accounts                                                        []string
	vars                                                            map[string]string
	priority                                                        int

	// A message the expansion made and has not stored yet (see expTx).
	fresh bool
	body  string
	due   time.Time
}

// expand turns due intents into messages, one per phone, applying the
// contact, quiet-hour and consolidation policies. It returns how many
// intents it took.
func (o *Outbox) expand(ctx context.Context) (int, error) {
	now := o.clk.Now()
	ins, err := o.dueIntents(ctx, o.db, now)
	if err != nil || len(ins) == 0 {
		return 0, err
	}
	btx, err := o.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot expand intents: %w", err)
	}
	defer btx.Rollback()
	if o.db.Postgres() {
		// Instances sharing the outbox expand in turn: two expanding at
		// once would each fold intents into the same message and one's
		// accounts would be lost. The one that waits has nothing to do
		// until the other commits; then it reads again under the lock.
		if ok, err := o.db.TryLockTx(ctx, btx.Tx, "notify_expand"); err != nil || !ok {
			return 0, err
		}
		if ins, err = o.dueIntents(ctx, btx, now); err != nil || len(ins) == 0 {
			return 0, err
		}
	}
	tx := newExpTx(btx, o.db.Postgres())
	accts := o.lookupAccounts(ins)
	if err := tx.prefetch(ctx, msgKeys(ins, accts)); err != nil {
		return 0, err
	}
	var ev expandEvents
	for i, in := range ins {
		if i > 0 && o.db.UrgentWriteWaiting() {
			// The rules wait to commit (intake waits on them): store what
			// is expanded and let them go; the rest stays due.
			ins = ins[:i]
			break
		}
		if err := o.expandOne(ctx, tx, in, accts[i], now, &ev); err != nil {
			return 0, fmt.Errorf("cannot expand intent %s: %w", in.Key, err)
		}
	}
	if err := tx.flush(ctx, now); err != nil {
		return 0, err
	}
	if err := markDone(ctx, tx, ins); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("cannot commit expanded intents: %w", err)
	}
	ev.flush()
	if err := o.analyzeAfterBulk(ctx, len(ins)); err != nil {
		o.log.Warn().Err(err).Msg("outbox statistics not refreshed")
	}
	return len(ins), nil
}

func markDone(ctx context.Context, tx *expTx, ins []event.Intent) error {
	keys := make([]string, len(ins))
	for i, in := range ins {
		keys[i] = in.Key
	}
	if tx.pg {
		if _, err := tx.ExecContext(ctx, `UPDATE notify_intents SET state = 'done' WHERE key = ANY($1)`, keys); err != nil {
			return fmt.Errorf("cannot mark intents expanded: %w", err)
		}
		return nil
	}
	for start := 0; start < len(keys); start += 100 {
		chunk := keys[start:min(start+100, len(keys))]
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		q := `UPDATE notify_intents SET state = 'done' WHERE key IN (` + store.Marks(false, 0, len(chunk)) + `)`
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("cannot mark intents expanded: %w", err)
		}
	}
	return nil
}

// expandEvents collects metric increments until the commit.
type expandEvents [][2]string

func (e *expandEvents) add(kind, status string) { *e = append(*e, [2]string{kind, status}) }
func (e expandEvents) flush() {
	for _, x := range e {
		count(x[0], x[1])
	}
}

// queryer is a *store.DB or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (o *Outbox) dueIntents(ctx context.Context, q queryer, now time.Time) ([]event.Intent, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, kind, account, grid, to_phone, ref, vars, priority, not_before, created_at
		FROM notify_intents WHERE state = $1 AND not_before <= $2 ORDER BY not_before, created_at LIMIT $3`,
		StatusPending, now.UnixNano(), expandBatch)
	if err != nil {
		return nil, fmt.Errorf("cannot read due intents: %w", err)
	}
	defer rows.Close()
	var ins []event.Intent
	for rows.Next() {
		var in event.Intent
		var kind, vars string
		var prio int
		var notBefore, created int64
		if err := rows.Scan(&in.Key, &kind, &in.Account, &in.Grid, &in.To, &in.Ref, &vars, &prio, &notBefore, &created); err != nil {
			return nil, fmt.Errorf("cannot read due intents: %w", err)
		}
		in.Kind, in.Priority, in.CreatedAt = event.Kind(kind), event.Priority(prio), time.Unix(0, created)
		if notBefore != 0 {
			in.NotBefore = time.Unix(0, notBefore)
		}
		if err := json.Unmarshal([]byte(vars), &in.Vars); err != nil {
			return nil, fmt.Errorf("cannot decode vars of intent %s: %w", in.Key, err)
		}
		if a, ok := in.Vars[aliasesVar]; ok {
			in.Aliases = strings.Split(a, ",")
			delete(in.Vars, aliasesVar)
		}
		ins = append(ins, in)
	}
	// An outage expands before its restored when both are due at once.
	sort.SliceStable(ins, func(i, j int) bool {
		if !ins[i].CreatedAt.Equal(ins[j].CreatedAt) {
			return ins[i].CreatedAt.Before(ins[j].CreatedAt)
		}
		return kindRank(ins[i].Kind) < kindRank(ins[j].Kind)
	})
	return ins, rows.Err()
}

func kindRank(k event.Kind) int {
	switch k {
	case event.KindOutage:
		return 0
	case event.KindRestored:
		return 2
	}
	return 1
}

// expandOne places in for each phone of acct (nil: unknown, or in.To is set).
func (o *Outbox) expandOne(ctx context.Context, tx *expTx, in event.Intent, acct *contacts.Account, now time.Time, ev *expandEvents) error {
	if in.To != "" {
		return o.place(ctx, tx, in, in.To, "zh", priority(in, nil), now, ev)
	}
	switch {
	case acct == nil:
		return o.suppress(ctx, tx, in, "", "unknown account", ev)
	case acct.Retired:
		return o.suppress(ctx, tx, in, "", "retired account", ev)
	}
	prio := priority(in, acct)
	var reasons []string
	seen := map[string]bool{}
	placed := 0
	for _, c := range acct.Contacts {
		if c.Phone != "" && seen[c.Phone] {
			continue
		}
		seen[c.Phone] = true
		if r := contactReason(c); r != "" {
			reasons = append(reasons, r)
			if c.Phone != "" {
				if err := o.suppress(ctx, tx, in, c.Phone, r, ev); err != nil {
					return err
				}
			}
			continue
		}
		lang := cmp.Or(c.Language, acct.Language, "zh")
		if err := o.place(ctx, tx, in, c.Phone, lang, prio, now, ev); err != nil {
			return err
		}
		placed++
	}
	if placed > 0 {
		return nil
	}
	if len(reasons) == 0 {
		reasons = []string{"no phone"}
	}
	return o.suppress(ctx, tx, in, "", "no valid phone: "+strings.Join(slices.Compact(reasons), ", "), ev)
}

// contactReason says why contact c gets no SMS, or "" when it may.
func contactReason(c contacts.Contact) string {
	switch {
	case c.OptOut:
		return "opted out"
	case c.Verdict == contacts.Landline:
		return "landline"
	case c.Verdict == contacts.Invalid:
		return "invalid number"
	case c.Verdict == contacts.Missing || c.Phone == "":
		return "no phone"
	case !c.Verdict.CanSMS():
		return string(c.Verdict)
	}
	return ""
}

// suppress records that intent in sends nothing to phone ("" = the account).
func (o *Outbox) suppress(ctx context.Context, tx *expTx, in event.Intent, phone, reason string, ev *expandEvents) error {
	ev.add(string(in.Kind), StatusSuppressed)
	return o.link(ctx, tx, in, phone, "", StatusSuppressed, reason)
}

func (o *Outbox) link(_ context.Context, tx *expTx, in event.Intent, phone, msgID, status, reason string) error {
	tx.links = append(tx.links, in.Key, phone, in.Account, in.Ref, msgID, status, reason, in.CreatedAt.UnixNano())
	return nil
}

// msgKey names the one message intent in becomes for phone. At most one
// outage and one restored go to a phone per outage; other kinds merge the
// accounts of a phone when everything but the account is the same.
func msgKey(in event.Intent, phone string) string {
	base := string(in.Kind) + "|" + in.Ref + "|" + phone
	switch in.Kind {
	case event.KindOutage, event.KindRestored:
		return base
	case event.KindManagerDigest:
		return base + "|" + in.Key
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(in.Vars)) {
		if k == "account" || k == "name" {
			continue
		}
		b.WriteString(k + "=" + in.Vars[k] + "\x1f")
	}
	fmt.Fprintf(&b, "nb=%d", nanos(in.NotBefore))
	return base + "|" + shortHash(b.String())
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// msgID is stable for a message key, so a re-send after a crash is
// recognisable by its id.
func msgID(key string) string { return "sms-" + shortHash(key) }

func (o *Outbox) place(ctx context.Context, tx *expTx, in event.Intent, phone, lang string, prio event.Priority, now time.Time, ev *expandEvents) error {
	if in.Kind == event.KindRestored {
		return o.placeRestored(ctx, tx, in, phone, lang, prio, now, ev)
	}
	return o.upsert(ctx, tx, in, phone, lang, prio, string(in.Kind), now, ev)
}

// upsert adds intent in to its message for phone, creating the message or,
// while it is unsent, adding the account to it.
func (o *Outbox) upsert(ctx context.Context, tx *expTx, in event.Intent, phone, lang string, prio event.Priority, tpl string, now time.Time, ev *expandEvents) error {
	key := msgKey(in, phone)
	// Most intents make a new message: try the insert first.
	m := &msgRow{id: msgID(key), key: key, kind: string(in.Kind), template: tpl, ref: in.Ref, phone: phone,
		grid: in.Grid, lang: lang, accounts: nonEmpty(in.Account), vars: in.Vars, priority: int(prio)}
	inserted, err := o.insertMsg(ctx, tx, m, now, ev)
	if err != nil || inserted {
		if err != nil {
			return err
		}
		return o.link(ctx, tx, in, phone, m.id, "", "")
	}
	if m, err = tx.getMsg(ctx, key); err != nil {
		return err
	}
	if target, ok := strings.CutPrefix(m.reason, consolidatedInto); ok && m.status == StatusSuppressed {
		// Already folded into an outage-and-restored message: that one told the phone.
		return o.link(ctx, tx, in, phone, target, "", "")
	}
	if unsent(m.status) && (!slices.Contains(m.accounts, in.Account) || int(prio) < m.priority) {
		if in.Account != "" && !slices.Contains(m.accounts, in.Account) {
			m.accounts = append(m.accounts, in.Account)
		}
		m.priority = min(m.priority, int(prio))
		if err := o.updateMsg(ctx, tx, m, now); err != nil {
			return err
		}
	}
	return o.link(ctx, tx, in, phone, m.id, "", "")
}

// placeRestored sends restored only to a phone told of the outage, and
// folds it into the outage message when that is still unsent.
func (o *Outbox) placeRestored(ctx context.Context, tx *expTx, in event.Intent, phone, lang string, prio event.Priority, now time.Time, ev *expandEvents) error {
	if m, err := tx.getMsg(ctx, msgKey(in, phone)); err != nil || m != nil {
		if err != nil {
			return err
		}
		return o.upsert(ctx, tx, in, phone, lang, prio, m.template, now, ev)
	}
	om, err := o.outageMsg(ctx, tx, in, phone)
	switch {
	case err != nil:
		return err
	case om == nil:
		return o.suppress(ctx, tx, in, phone, "not told of the outage", ev)
	case unsent(om.status):
		return o.consolidate(ctx, tx, in, om, prio, now, ev)
	case told(om.status):
		return o.upsert(ctx, tx, in, phone, lang, prio, string(in.Kind), now, ev)
	}
	return o.suppress(ctx, tx, in, phone, "not told of the outage (outage sms "+om.status+")", ev)
}

// aliasesVar is the vars key that stores an intent's Aliases.
const aliasesVar = "_aliases"

// outageMsg finds the outage message phone got for in's outage: under its
// ref, or under the id of a record merged into it (a customer told of an
// outage first seen by meters was told of the merged one).
func (o *Outbox) outageMsg(ctx context.Context, tx *expTx, in event.Intent, phone string) (*msgRow, error) {
	outage := in
	outage.Kind = event.KindOutage
	for _, ref := range append([]string{in.Ref}, in.Aliases...) {
		outage.Ref = ref
		om, err := tx.getMsg(ctx, msgKey(outage, phone))
		if err != nil || om != nil {
			return om, err
		}
	}
	return nil, nil
}

// consolidatedInto starts the reason of an outage message folded into a
// consolidated one; the target id follows.
const consolidatedInto = "consolidated into "

// consolidate replaces the unsent outage message om by one "was off from X
// to Y and is back" message that inherits om's accounts and links.
func (o *Outbox) consolidate(ctx context.Context, tx *expTx, in event.Intent, om *msgRow, prio event.Priority, now time.Time, ev *expandEvents) error {
	vars := maps.Clone(om.vars)
	if vars == nil {
		vars = map[string]string{}
	}
	for k, v := range in.Vars {
		if v != "" || vars[k] == "" {
			vars[k] = v
		}
	}
	if s := om.vars["start"]; s != "" {
		vars["start"] = s
	}
	accounts := om.accounts
	if in.Account != "" && !slices.Contains(accounts, in.Account) {
		accounts = append(slices.Clone(accounts), in.Account)
	}
	key := msgKey(in, om.phone)
	m := &msgRow{id: msgID(key), key: key, kind: string(event.KindRestored), template: tplOutageRestored, ref: in.Ref,
		phone: om.phone, grid: om.grid, lang: om.lang, accounts: accounts, vars: vars, priority: min(om.priority, int(prio))}
	if inserted, err := o.insertMsg(ctx, tx, m, now, ev); err != nil || !inserted {
		if err == nil {
			err = fmt.Errorf("message %s exists already", m.id)
		}
		return err
	}
	if !om.fresh {
		if _, err := tx.ExecContext(ctx, `UPDATE notify_messages SET status = $1, reason = $2, updated_at = $3 WHERE id = $4`,
			StatusSuppressed, consolidatedInto+m.id, now.UnixNano(), om.id); err != nil {
			return err
		}
	}
	om.status, om.reason = StatusSuppressed, consolidatedInto+m.id
	ev.add(om.kind, StatusSuppressed)
	if err := tx.flushLinks(ctx); err != nil { // the links of om may wait in tx
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE notify_links SET message_id = $1 WHERE message_id = $2`, m.id, om.id); err != nil {
		return err
	}
	return o.link(ctx, tx, in, om.phone, m.id, "", "")
}

func unsent(status string) bool { return status == StatusQueued || status == StatusHeld }

// told reports whether a message in status reached, or may have reached, the phone.
func told(status string) bool {
	return status == StatusSending || status == StatusSent || status == StatusDelivered || status == StatusUndelivered
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// msgCols are the columns readMsgs scans.
const msgCols = `id, msg_key, kind, template, ref, phone, grid, lang, status, reason, accounts, vars, priority`

// readMsgs scans rows of msgCols.
func readMsgs(rows *sql.Rows) ([]*msgRow, error) {
	defer rows.Close()
	var out []*msgRow
	for rows.Next() {
		m := &msgRow{}
		var accounts, vars string
		if err := rows.Scan(&m.id, &m.key, &m.kind, &m.template, &m.ref, &m.phone, &m.grid,
			&m.lang, &m.status, &m.reason, &accounts, &vars, &m.priority); err != nil {
			return nil, fmt.Errorf("cannot read messages: %w", err)
		}
		if accounts != "" {
			m.accounts = strings.Split(accounts, ",")
		}
		if err := json.Unmarshal([]byte(vars), &m.vars); err != nil {
			return nil, fmt.Errorf("cannot decode vars of message %s: %w", m.id, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read messages: %w", err)
	}
	return out, nil
}

// insertMsg adds m to the messages tx stores unless a message with its
// key exists; it reports whether it did.
func (o *Outbox) insertMsg(ctx context.Context, tx *expTx, m *msgRow, now time.Time, ev *expandEvents) (bool, error) {
	if old, err := tx.getMsg(ctx, m.key); err != nil || old != nil {
		return false, err
	}
	body, err := o.render(m)
	if err != nil {
		return false, err
	}
	m.status, m.reason, m.due = StatusQueued, "", now
	if until := o.qh.heldUntil(event.Kind(m.kind), now); !until.IsZero() {
		m.status, m.reason, m.due = StatusHeld, "quiet hours", until
	}
	m.body, m.fresh = body, true
	tx.known[m.key] = m
	tx.fresh = append(tx.fresh, m)
	ev.add(m.kind, m.status)
	return true, nil
}

func (o *Outbox) updateMsg(ctx context.Context, tx *expTx, m *msgRow, now time.Time) error {
	body, err := o.render(m)
	if err != nil {
		return err
	}
	if m.fresh { // not stored yet: flush writes it as it is now
		m.body = body
		return nil
	}
	_, err = tx.ExecContext(ctx, `UPDATE notify_messages SET accounts = $1, body = $2, priority = $3, updated_at = $4 WHERE id = $5`,
		strings.Join(m.accounts, ","), body, m.priority, now.UnixNano(), m.id)
	if err != nil {
		return fmt.Errorf("cannot update message %s: %w", m.id, err)
	}
	return nil
}

// render fills m's template with its vars, the masked accounts, the grid
// and the hotline.
func (o *Outbox) render(m *msgRow) (string, error) {
	data := make(map[string]string, len(m.vars)+4)
	maps.Copy(data, m.vars)
	sep := "、"
	if m.lang == "en" {
		sep = ", "
	}
	masked := make([]string, len(m.accounts))
	for i, a := range m.accounts {
		masked[i] = MaskAccount(a)
	}
	data["accounts"] = strings.Join(masked, sep)
	if len(masked) > 0 {
		data["account"] = masked[0]
	}
	data["hotline"] = o.cfg.Hotline
	if data["end"] == "" { // the rules call the restoration time restored_at
		data["end"] = data["restored_at"]
	}
	if data["grid"] == "" {
		data["grid"] = m.grid
	}
	if o.varsHook != nil {
		o.varsHook(m.kind, m.ref, m.accounts, data)
	}
	return o.tpl.Render(m.lang, m.template, data)
}

// MaskAccount shows only an account's last four digits: ****2345.
func MaskAccount(a string) string {
	r := []rune(a)
	if len(r) <= 4 {
		return "****"
	}
	return "****" + string(r[len(r)-4:])
}
