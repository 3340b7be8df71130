package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	twclient "github.com/twilio/twilio-go/client"
	twapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// TwilioSender sends through the Twilio Messages API with twilio-go.
//
// twilio-go builds every URL on https://api.twilio.com and takes no
// context, so each Send builds a light client.Client whose http.Client has
// a per-call transport: it points the request at sms.twilio.api_base
// (scheme, host and any path prefix: an egress proxy or a compatible
// gateway), carries the caller's context, and keeps the status and
// Retry-After that twilio-go's error type drops. The connection pool
// underneath is shared.
type TwilioSender struct {
	cfg   TwilioConfig
	base  *url.URL
	creds *twclient.Credentials
	rt    http.RoundTripper
	log   zerolog.Logger
}

// NewTwilioSender checks cfg and returns a sender for it.
func NewTwilioSender(cfg TwilioConfig, log zerolog.Logger) (*TwilioSender, error) {
	if cfg.APIBase == "" {
		cfg.APIBase = "https://api.twilio.com"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	base, err := url.Parse(cfg.APIBase)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("sms.twilio.api_base %q is not a URL", cfg.APIBase)
	}
	if cfg.AccountSID == "" || cfg.AuthToken == "" {
		return nil, errors.New("twilio needs an account sid and an auth token")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	fenceWrites(tr)
	return &TwilioSender{cfg: cfg, base: base, rt: tr, log: log,
		creds: twclient.NewCredentials(cfg.AccountSID, cfg.AuthToken.Reveal())}, nil
}

// Send creates one message. A message tried before whose outcome is not
// known (m.Attempts > 0: a timeout, a broken connection, a 5xx) is first
// looked up at Twilio: if Twilio holds it, that is the result, and it is
// not sent twice.
func (s *TwilioSender) Send(ctx context.Context, m Message) (Result, error) {
	if m.Attempts > 0 {
		res, found, err := s.lookup(ctx, m)
		if err != nil {
			return Result{}, err
		}
		if found {
			s.log.Info().Str("message", m.ID).Str("sid", res.ProviderID).Msg("twilio already holds a message whose send timed out; not sending it again")
			return res, nil
		}
	}
	c, call := s.client(ctx)
	p := &twapi.CreateMessageParams{}
	p.SetTo(m.To)
	p.SetBody(m.Body)
	if s.cfg.MessagingServiceSID != "" {
		p.SetMessagingServiceSid(s.cfg.MessagingServiceSID)
	} else {
		p.SetFrom(s.cfg.From)
	}
	if s.cfg.StatusCallback != "" {
		p.SetStatusCallback(s.cfg.StatusCallback)
	}
	msg, err := twapi.NewApiServiceWithClient(c).CreateMessage(p)
	if err != nil {
		return Result{}, classify(err, call)
	}
	if msg.Sid == nil {
		return Result{}, errors.New("twilio answered without a message sid")
	}
	return Result{ProviderID: *msg.Sid, SentAt: time.Now()}, nil
}

// client builds one call's twilio-go client; see TwilioSender.
func (s *TwilioSender) client(ctx context.Context) (*twclient.Client, *callTransport) {
	call := &callTransport{ctx: ctx, base: s.base, rt: s.rt}
	c := &twclient.Client{Credentials: s.creds, HTTPClient: &http.Client{
		Transport:     call,
		Timeout:       s.cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	c.SetAccountSid(s.cfg.AccountSID)
	return c, call
}

// lookupDepth is how many of a phone's latest messages a lookup reads.
const lookupDepth = 100

// lookup asks Twilio whether it holds m already: a message to m.To with
// m.Body created since m was queued (Twilio keeps no idempotency key).
// Twilio lists a phone's messages newest first.
func (s *TwilioSender) lookup(ctx context.Context, m Message) (Result, bool, error) {
	c, call := s.client(ctx)
	p := &twapi.ListMessageParams{}
	p.SetTo(m.To)
	p.SetPageSize(lookupDepth)
	p.SetLimit(lookupDepth)
	msgs, err := twapi.NewApiServiceWithClient(c).ListMessage(p)
	if err != nil {
		return Result{}, false, fmt.Errorf("cannot look message %s up at twilio before sending it again: %w", m.ID, classify(err, call))
	}
	since := m.QueuedAt.Add(-time.Minute) // clocks differ
	for _, r := range msgs {
		if r.Sid == nil || r.Body == nil || *r.Body != m.Body {
			continue
		}
		var created time.Time
		if r.DateCreated != nil {
			created, _ = time.Parse(time.RFC1123Z, *r.DateCreated)
		}
		if !created.IsZero() && created.Before(since) {
			continue
		}
		if created.IsZero() {
			created = time.Now()
		}
		return Result{ProviderID: *r.Sid, SentAt: created}, true, nil
	}
	return Result{}, false, nil
}

// classify types a twilio-go error: throttles, permanent refusals (with
// what they say of the number) and transient failures.
func classify(err error, call *callTransport) error {
	status, retryAfter := call.result()
	var rest *twclient.TwilioRestError
	if errors.As(err, &rest) {
		status = max(status, rest.Status)
	}
	switch {
	case status == http.StatusTooManyRequests:
		return &ThrottleError{Status: status, RetryAfter: max(retryAfter, time.Second)}
	case status >= 500 && retryAfter > 0:
		return &ThrottleError{Status: status, RetryAfter: retryAfter}
	case status == 0 && call.wroteRequest():
		// Twilio may have created the message: only a lookup can tell.
		return &UnknownOutcomeError{Err: err}
	case status >= 500 || status == 0:
		return fmt.Errorf("cannot reach twilio (status %d): %w", status, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// A configuration problem: keep the messages until it is fixed.
		return fmt.Errorf("twilio refused our credentials (status %d): %w", status, err)
	case rest != nil:
		return permanentFromCode(rest.Code, rest.Message)
	}
	return &PermanentError{Code: status, Message: err.Error()}
}

// callTransport is one Send's transport; see TwilioSender.
type callTransport struct {
	ctx  context.Context
	base *url.URL
	rt   http.RoundTripper

	mu         sync.Mutex // guards status, retryAfter, wrote
	status     int
	retryAfter time.Duration
	wrote      bool // the request reached the network whole
}

func (t *callTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// The send's deadline ends within its claim's lease (deliver): the
	// connection the request gets refuses to write it once the deadline
	// has passed, by the clock at the write (fencedconn.go), so a process
	// that stood still past it writes nothing, before the runtime has even
	// noticed that the deadline passed.
	ctx := httptrace.WithClientTrace(t.ctx, &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { fenceConn(i.Conn, t.ctx) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				t.mu.Lock()
				t.wrote = true
				t.mu.Unlock()
			}
		}})
	r := req.Clone(ctx)
	r.URL.Scheme = t.base.Scheme
	r.URL.Host = t.base.Host
	r.URL.Path = strings.TrimSuffix(t.base.Path, "/") + req.URL.Path
	r.URL.RawPath = ""
	r.Host = t.base.Host
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.status = resp.StatusCode
	t.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	t.mu.Unlock()
	if resp.StatusCode >= 400 {
		// twilio-go never closes an error response's body: read it here so
		// the connection goes back to the pool.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

func (t *callTransport) wroteRequest() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wrote
}

func (t *callTransport) result() (int, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status, t.retryAfter
}

// parseRetryAfter reads seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
