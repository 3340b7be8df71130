package notify

import (
	"context"
	"database/sql"
	"errors"
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

// maxWebhookBody bounds what a webhook reads.
const maxWebhookBody = 64 << 10

// verified reads r's form body and checks its X-Twilio-Signature against
// the URL Twilio called (configured, or rebuilt from the request). Without
// an auth token nothing can be verified, so everything is refused.
func (o *Outbox) verified(r *http.Request, configured string) (url.Values, bool) {
	if r.Method != http.MethodPost {
		return nil, false
	}
	token := o.cfg.Twilio.AuthToken.Reveal()
	sig := r.Header.Get("X-Twilio-Signature")
	if token == "" || sig == "" {
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody))
	if err != nil {
		return nil, false
	}
	u := configured
	if u == "" {
		u = requestURL(r)
	}
	v := twclient.NewRequestValidator(token)
	if !v.ValidateBody(u, body, sig) {
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	return form, err == nil
}

// requestURL rebuilds the URL a client called, honouring a reverse proxy's
// X-Forwarded-Proto and X-Forwarded-Host.
func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		host = h
	}
	return scheme + "://" + host + r.URL.RequestURI()
}

// receiptStatuses maps Twilio's callback statuses to ours; others are ignored.
var receiptStatuses = map[string]string{
	"delivered": StatusDelivered, "read": StatusDelivered,
	"undelivered": StatusUndelivered, "failed": StatusFailed,
}

// StatusWebhook serves POST /twilio/status: Twilio's delivery receipts.
func (o *Outbox) StatusWebhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, ok := o.verified(r, o.cfg.Twilio.StatusCallback)
		if !ok {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		status, known := receiptStatuses[form.Get("MessageStatus")]
		sid := form.Get("MessageSid")
		if !known || sid == "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		reason := ""
		code := form.Get("ErrorCode")
		if code != "" {
			reason = "twilio error " + code
		}
		if err := o.receipt(r.Context(), sid, status, reason); err != nil {
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
	err := o.db.QueryRowContext(ctx, `UPDATE notify_messages SET status = $1, reason = $2, updated_at = $3
		WHERE provider_id = $4 RETURNING kind`, status, reason, now, sid).Scan(&kind)
	if err == nil {
		count(kind, status)
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	o.hasReceipts.Store(true)
	_, err = o.db.ExecContext(ctx, `INSERT INTO notify_receipts (provider_id, status, reason, at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (provider_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, at = excluded.at`,
		sid, status, reason, now)
	return err
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
		form, ok := o.verified(r, o.cfg.Twilio.InboundURL)
		if !ok {
			http.Error(w, "bad signature", http.StatusForbidden)
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
			o.log.Error().Err(err).Str("phone", logging.Phone(from)).Msg("cannot handle sms reply")
			http.Error(w, "cannot handle reply", http.StatusServiceUnavailable)
			return
		}
		o.log.Info().Str("phone", logging.Phone(from)).Str("reply", word).Msg("sms reply")
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Response></Response>`)
	})
}

// optOut opts phone out in the directory and suppresses what is queued for it.
func (o *Outbox) optOut(ctx context.Context, phone string) error {
	if err := o.dir.SetOptOut(ctx, phone, true); err != nil {
		return err
	}
	return suppressPhone(ctx, o.db, phone, "opted out", o.clk.Now())
}
