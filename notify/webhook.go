package notify

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	twclient "github.com/twilio/twilio-go/client"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/logging"
)

// ReportSink takes "still out" replies; the rules engine implements it and
// decides, from what it knows of the account's meters, whether to flag them.
type ReportSink interface {
	ReportStillOut(ctx context.Context, phone string, accounts []string) error
}

// maxWebhookBody bounds what a webhook reads: Twilio posts well under 4 KiB.
const maxWebhookBody = 64 << 10

// verified checks r as one of Twilio's and returns its form; otherwise it
// answers the refusal itself. The signature header is checked first
// (present, and base64 of an HMAC-SHA1), so a client without one costs no
// body read; the body is bounded, then checked against the signature over
// the URL Twilio called: configured, or rebuilt from the request. The HTTP
// layer removes X-Forwarded-* unless they come from a trusted proxy
// (http.trusted_proxies). Without an auth token nothing can be verified,
// so everything is refused.
func (o *Outbox) verified(w http.ResponseWriter, r *http.Request, configured string) (url.Values, bool) {
	refuse := func(code int, msg string) (url.Values, bool) {
		w.Header().Set("Connection", "close") // never wait for the body of a refused request
		http.Error(w, msg, code)
		return nil, false
	}
	token := o.cfg.Twilio.AuthToken.Reveal()
	sig := r.Header.Get("X-Twilio-Signature")
	switch {
	case r.Method != http.MethodPost:
		return refuse(http.StatusMethodNotAllowed, "use POST")
	case token == "":
		return refuse(http.StatusForbidden, "bad signature: no sms.twilio.auth_token to check it with")
	case !wellFormedSignature(sig):
		return refuse(http.StatusForbidden, "bad signature: X-Twilio-Signature missing or malformed")
	case r.ContentLength > maxWebhookBody:
		return refuse(http.StatusRequestEntityTooLarge, "body too large")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return refuse(http.StatusRequestEntityTooLarge, "body too large")
	case err != nil:
		return refuse(http.StatusBadRequest, "cannot read body")
	}
	u := configured
	if u == "" {
		u = requestURL(r)
	}
	if v := twclient.NewRequestValidator(token); !v.ValidateBody(u, body, sig) {
		return refuse(http.StatusForbidden, "bad signature")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return refuse(http.StatusBadRequest, "cannot parse form")
	}
	return form, true
}

// wellFormedSignature reports whether sig can be an X-Twilio-Signature:
// the base64 of a 20-byte HMAC-SHA1.
func wellFormedSignature(sig string) bool {
	if len(sig) != base64.StdEncoding.EncodedLen(sha1.Size) {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(sig)
	return err == nil && len(b) == sha1.Size
}

// requestURL rebuilds the URL a client called, honouring a trusted reverse
// proxy's X-Forwarded-Proto and X-Forwarded-Host (first value of each).
func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); strings.TrimSpace(p) == "https" || strings.TrimSpace(p) == "http" {
		scheme = strings.TrimSpace(p)
	}
	host := r.Host
	if h, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ","); strings.TrimSpace(h) != "" {
		host = strings.TrimSpace(h)
	}
	return scheme + "://" + host + r.URL.RequestURI()
}

// once claims key for a webhook's effect, durably: true the first time,
// false for a replay. Each MessageSid takes effect once (docs/interfaces.md §4): a
// captured START replayed after a STOP changes nothing.
func (o *Outbox) once(ctx context.Context, key string) (bool, error) {
	res, err := o.db.ExecContext(ctx, `INSERT INTO notify_webhooks (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`,
		key, o.clk.Now().UnixNano())
	if err != nil {
		return false, fmt.Errorf("cannot record webhook %s: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("cannot record webhook %s: %w", key, err)
	}
	if n == 0 {
		webhookReplays.Inc()
	}
	return n == 1, nil
}

// forget drops key's claim after its effect failed, so Twilio's retry
// takes effect.
func (o *Outbox) forget(ctx context.Context, key string) {
	if _, err := o.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM notify_webhooks WHERE key = $1`, key); err != nil {
		o.log.Error().Err(err).Str("key", key).Msg("cannot forget a failed webhook; its retry will be ignored")
	}
}

// receiptStatuses maps Twilio's callback statuses to ours; others are ignored.
var receiptStatuses = map[string]string{
	"delivered": StatusDelivered, "read": StatusDelivered,
	"undelivered": StatusUndelivered, "failed": StatusFailed,
}

// StatusWebhook serves POST /twilio/status: Twilio's delivery receipts.
func (o *Outbox) StatusWebhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, ok := o.verified(w, r, o.cfg.Twilio.StatusCallback)
		if !ok {
			return
		}
		status, known := receiptStatuses[form.Get("MessageStatus")]
		sid := form.Get("MessageSid")
		if !known || sid == "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		key := "status " + sid + " " + form.Get("MessageStatus")
		if first, err := o.once(r.Context(), key); err != nil || !first {
			o.answerOnce(w, err, http.StatusNoContent)
			return
		}
		reason := ""
		code := form.Get("ErrorCode")
		if code != "" {
			reason = "twilio error " + code
		}
		if err := o.receipt(r.Context(), sid, status, reason); err != nil {
			o.forget(r.Context(), key)
			o.log.Error().Err(err).Msg("cannot record delivery receipt")
			http.Error(w, "cannot record receipt", http.StatusServiceUnavailable)
			return
		}
		if v, ok := deliveryVerdicts[code]; ok && form.Get("To") != "" {
			if err := o.dir.SetVerdict(r.Context(), form.Get("To"), v, reason); err != nil {
				o.log.Error().Err(err).Str("to", logging.Phone(form.Get("To"))).Msg("cannot record the number's verdict")
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// deliveryVerdicts are the carriers' delivery errors that say something
// lasting about the number: Twilio 30005 (unknown destination handset) and
// 30006 (landline or unreachable carrier). Passing errors (30003
// unreachable, 30008 unknown) and blocks (30004) say nothing of the number.
var deliveryVerdicts = map[string]contacts.Verdict{
	"30005": contacts.Invalid,
	"30006": contacts.Landline,
}

// receipt records a delivery status. A receipt can beat the record of the
// send it is about; it is then kept and applied when the send is recorded.
func (o *Outbox) receipt(ctx context.Context, sid, status, reason string) error {
	now := o.clk.Now().UnixNano()
	var kind string
	var sentAt int64
	err := o.db.QueryRowContext(ctx, `UPDATE notify_messages SET status = $1, reason = $2, updated_at = $3
		WHERE provider_id = $4 RETURNING kind, sent_at`, status, reason, now, sid).Scan(&kind, &sentAt)
	if err == nil {
		count(kind, status)
		if status == StatusDelivered && sentAt > 0 {
			sentToDelivered.WithLabelValues(kind).Observe(max(0, float64(now-sentAt)/1e9))
		}
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	o.hasReceipts.Store(true)
	_, err = o.db.ExecContext(ctx, `INSERT INTO notify_receipts (provider_id, status, reason, at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (provider_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, at = excluded.at`,
		sid, status, reason, now)
	if err != nil {
		return err
	}
	// The send's record may have committed since the update above (on
	// PostgreSQL it ran while that record was in flight): apply it now.
	return applyReceipts(ctx, o.db)
}

// applyReceipts applies receipts that arrived before their send was recorded.
func applyReceipts(ctx context.Context, tx execer) error {
	if _, err := tx.ExecContext(ctx, `UPDATE notify_messages SET
			status = (SELECT r.status FROM notify_receipts r WHERE r.provider_id = notify_messages.provider_id),
			reason = (SELECT r.reason FROM notify_receipts r WHERE r.provider_id = notify_messages.provider_id)
		WHERE provider_id IN (SELECT provider_id FROM notify_receipts)`); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM notify_receipts WHERE provider_id IN
		(SELECT provider_id FROM notify_messages WHERE provider_id <> '')`)
	return err
}

// Reply keywords (upper-cased, trimmed).
var (
	stopWords  = map[string]bool{"STOP": true, "STOPALL": true, "UNSUBSCRIBE": true, "CANCEL": true, "END": true, "QUIT": true, "退订": true, "TD": true}
	startWords = map[string]bool{"START": true, "UNSTOP": true, "YES": true}
	outWords   = map[string]bool{"OUT": true, "停电": true}
)

// InboundWebhook serves POST /twilio/inbound: customers' replies. STOP,
// 退订 and TD opt the number out, START opts it back in, OUT and 停电 are
// passed to reports as "customer says still out".
func (o *Outbox) InboundWebhook(reports ReportSink) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, ok := o.verified(w, r, o.cfg.Twilio.InboundURL)
		if !ok {
			return
		}
		sid := form.Get("MessageSid")
		if sid == "" {
			http.Error(w, "no MessageSid", http.StatusBadRequest)
			return
		}
		key := "inbound " + sid
		if first, err := o.once(r.Context(), key); err != nil || !first {
			o.answerOnce(w, err, http.StatusOK)
			return
		}
		from := form.Get("From")
		word := strings.ToUpper(strings.Trim(strings.TrimSpace(form.Get("Body")), ".!。！ "))
		var err error
		switch {
		case from == "":
		case stopWords[word]:
			err = o.optOut(r.Context(), from)
		case startWords[word]:
			err = o.dir.SetOptOut(r.Context(), from, false)
		case outWords[word] && reports != nil:
			err = reports.ReportStillOut(r.Context(), from, o.dir.AccountsByPhone(from))
		}
		if err != nil {
			o.forget(r.Context(), key)
			o.log.Error().Err(err).Str("phone", logging.Phone(from)).Msg("cannot handle sms reply")
			http.Error(w, "cannot handle reply", http.StatusServiceUnavailable)
			return
		}
		o.log.Info().Str("phone", logging.Phone(from)).Str("reply", word).Msg("sms reply")
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, emptyTwiML)
	})
}

// answerOnce answers a webhook that took no effect: 503 when its claim
// could not be recorded (Twilio retries), else ok, a replay's answer.
func (o *Outbox) answerOnce(w http.ResponseWriter, err error, ok int) {
	if err != nil {
		o.log.Error().Err(err).Msg("cannot record a twilio webhook")
		http.Error(w, "cannot record webhook", http.StatusServiceUnavailable)
		return
	}
	if ok == http.StatusOK {
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, emptyTwiML)
		return
	}
	w.WriteHeader(ok)
}

// emptyTwiML answers a reply without answering the customer.
const emptyTwiML = `<?xml version="1.0" encoding="UTF-8"?><Response></Response>`

// optOut opts phone out in the directory and suppresses what is queued for it.
func (o *Outbox) optOut(ctx context.Context, phone string) error {
	if err := o.dir.SetOptOut(ctx, phone, true); err != nil {
		return err
	}
	return suppressPhone(ctx, o.db, phone, "opted out", o.clk.Now())
}
