package notify

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
)

// Message is one SMS to one phone, as a Sender sees it.
type Message struct {
	ID       string // stable: a message re-sent after a crash keeps its id
	To       string // E.164
	Account  string // the account, or several joined by commas when one phone serves several
	Kind     event.Kind
	Ref      string
	Body     string
	QueuedAt time.Time
	// Attempts counts earlier sends that did not end in a clean refusal (a
	// timeout, a broken connection, a 5xx): the provider may hold the
	// message already, and a sender that can look it up does so first.
	Attempts int
}

// Result is what a Sender reports for an accepted message.
type Result struct {
	ProviderID string // Twilio's message SID, or the message id for the outbox file
	SentAt     time.Time
}

// Sender hands one message to the provider. Errors are typed: a
// *PermanentError is never retried, a *ThrottleError is retried after its
// RetryAfter, any other error is transient and retried with backoff.
type Sender interface {
	Send(ctx context.Context, m Message) (Result, error)
}

// PermanentError is a refusal that retrying cannot change. Verdict, when
// set, is what the provider taught us about the number; OptOut says the
// recipient unsubscribed.
type PermanentError struct {
	Code    int
	Verdict contacts.Verdict
	OptOut  bool
	Message string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("sms refused for good (code %d): %s", e.Code, e.Message)
}

// ThrottleError asks the caller to slow down and wait at least RetryAfter.
type ThrottleError struct {
	RetryAfter time.Duration
	Status     int
}

func (e *ThrottleError) Error() string {
	return fmt.Sprintf("sms provider throttled (status %d), retry after %s", e.Status, e.RetryAfter)
}

// UnknownOutcomeError is a send whose request reached the provider but
// whose answer never came (a timeout, a broken connection): the message may
// or may not exist there. It is retried, and the retry first looks the
// message up, so a slow provider does not double messages.
type UnknownOutcomeError struct {
	Err error
}

func (e *UnknownOutcomeError) Error() string {
	return fmt.Sprintf("sms outcome unknown (no answer from the provider): %v", e.Err)
}

func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// Twilio error codes that carry a verdict on the number.
const (
	codeInvalidTo    = 21211
	codeUnsubscribed = 21610
	codeNotMobile    = 21614
)

// permanentFromCode types a Twilio REST error code.
func permanentFromCode(code int, msg string) *PermanentError {
	e := &PermanentError{Code: code, Message: msg}
	switch code {
	case codeInvalidTo:
		e.Verdict = contacts.Invalid
	case codeNotMobile:
		e.Verdict = contacts.Landline
	case codeUnsubscribed:
		e.OptOut = true
	}
	return e
}

// NewSender builds the sender that cfg.Sender names: "outbox" appends to the
// outbox file (default <dataDir>/outbox.jsonl), "twilio" calls the Twilio
// Messages API through twilio-go.
func NewSender(cfg Config, dataDir string, log zerolog.Logger) (Sender, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Sender {
	case "twilio":
		return NewTwilioSender(cfg.Twilio, log)
	default:
		path := cfg.OutboxFile
		if path == "" {
			path = filepath.Join(dataDir, "outbox.jsonl")
		}
		return OpenFileSender(path)
	}
}

// errClosed is returned by a sender used after Close.
var errClosed = errors.New("sender is closed")
