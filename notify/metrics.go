package notify

import (
	"errors"
	"time"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/metrics"
)

// notify's metrics (docs/metrics.md). Every kind × status series exists
// from the start, so rates and alerts see zeros rather than nothing.
var (
	smsTotal = metrics.Default.CounterVec("gridbell_sms_total",
		"SMS state transitions by kind and status (queued, held, suppressed, sent, retried, rejected, delivered, undelivered, failed, reclaimed).",
		"kind", "status")
	queueDepth = metrics.Default.GaugeVec("gridbell_sms_queue_depth",
		"SMS not yet sent, by state: pending (intents not yet expanded), queued, held (quiet hours, rate limit), sending.",
		"state")
	intentToSent = metrics.Default.HistogramVec("gridbell_sms_intent_to_sent_seconds",
		"From an intent's message being queued (the intent due) to the provider accepting it, by kind; quiet-hour holds and retries included.",
		metrics.LatencyBuckets, "kind")
	sentToDelivered = metrics.Default.HistogramVec("gridbell_sms_sent_to_delivered_seconds",
		"From an SMS accepted by the provider to its delivery receipt, by kind.",
		metrics.LatencyBuckets, "kind")
	webhookReplays = metrics.Default.Counter("gridbell_twilio_webhook_replays_total",
		"Twilio webhooks whose MessageSid had already taken effect, ignored.")
	logCorrupt = metrics.Default.Counter("gridbell_sms_intent_log_corrupt_total",
		"Rows of the intent log (a storm's intents, notify_intent_log) that could not be decoded; each is kept there with a negative n.")
	retriesVec = metrics.Default.CounterVec("gridbell_sms_retries_total",
		"SMS sends to retry, by class: throttled, transient, unknown_outcome (looked up before the resend).", "class")
	sendDuration = metrics.Default.HistogramVec("gridbell_sms_send_duration_seconds",
		"One hand-over of a message to the sender (a Twilio API call, or an outbox file append), by result: ok, permanent_error, throttled, error (retried).",
		metrics.CallBuckets, "result")
)

// Send results, the values of gridbell_sms_send_duration_seconds{result}.
const (
	sendOK        = "ok"
	sendPermanent = "permanent_error"
	sendThrottled = "throttled"
	sendError     = "error"
)

// countedStatuses are the statuses gridbell_sms_total counts; "retried" is
// a failed send queued again, "reclaimed" a send whose instance's lease
// lapsed, taken over by another.
var countedStatuses = []string{StatusQueued, StatusHeld, StatusSuppressed, StatusSent, "retried",
	StatusRejected, StatusDelivered, StatusUndelivered, StatusFailed, "reclaimed"}

func init() {
	for _, k := range event.Kinds {
		for _, s := range countedStatuses {
			smsTotal.WithLabelValues(string(k), s)
		}
		intentToSent.WithLabelValues(string(k))
		sentToDelivered.WithLabelValues(string(k))
	}
	for _, s := range []string{StatusPending, StatusQueued, StatusHeld, StatusSending} {
		queueDepth.WithLabelValues(s)
	}
	for _, r := range []string{sendOK, sendPermanent, sendThrottled, sendError} {
		sendDuration.WithLabelValues(r)
	}
	for _, c := range []string{retryThrottle, retryTransient, retryUnknown} {
		retriesVec.WithLabelValues(c)
	}
}

// count adds one to gridbell_sms_total{kind,status}.
func count(kind, status string) { smsTotal.WithLabelValues(kind, status).Inc() }

// observeSend records how long one Send took and how it ended.
func observeSend(took time.Duration, err error) {
	var perm *PermanentError
	var throttle *ThrottleError
	res := sendOK
	switch {
	case err == nil:
	case errors.As(err, &perm):
		res = sendPermanent
	case errors.As(err, &throttle):
		res = sendThrottled
	default:
		res = sendError
	}
	sendDuration.WithLabelValues(res).Observe(took.Seconds())
}

// observeSent records the wait of messages just recorded sent at now.
func observeSent(sent []outcome, now time.Time) {
	for _, r := range sent {
		at := r.res.SentAt
		if at.IsZero() {
			at = now
		}
		if !r.QueuedAt.IsZero() {
			intentToSent.WithLabelValues(string(r.Kind)).Observe(max(0, at.Sub(r.QueuedAt).Seconds()))
		}
	}
}
