package notify

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/secret"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/notifytest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

const (
	testSID   = "AC0123456789abcdef0123456789abcdef"
	testToken = "0123456789abcdef0123456789abcdef"
)

func twilioConfig(apiBase string) TwilioConfig {
	return TwilioConfig{AccountSID: testSID, AuthToken: secret.String(testToken), MessagingServiceSID: "MG0123456789abcdef0123456789abcdef",
		APIBase: apiBase, StatusCallback: "https://gridbell.example/twilio/status", Rate: 1000, Timeout: 2 * time.Second}
}

func TestTwilioSend(t *testing.T) {
	srv := twiliotest.New(testSID, testToken)
	defer srv.Close()
	// An egress proxy that serves Twilio under a path prefix.
	proxy := httptest.NewServer(http.StripPrefix("/egress/twilio", srv.Config.Handler))
	defer proxy.Close()
	for _, base := range []string{srv.URL, proxy.URL + "/egress/twilio/"} {
		s, err := NewTwilioSender(twilioConfig(base), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Send(context.Background(), Message{ID: "m1", To: "+8613812345678", Body: "停电通知"})
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if !strings.HasPrefix(res.ProviderID, "SM") || len(res.ProviderID) != 34 {
			t.Errorf("provider id %q", res.ProviderID)
		}
	}
	got := srv.Received()
	if len(got) != 2 || got[0].To != "+8613812345678" || got[0].Body != "停电通知" ||
		got[0].MessagingServiceSID == "" || got[0].StatusCallback != "https://gridbell.example/twilio/status" {
		t.Errorf("received %+v", got)
	}
}

func TestTwilioErrors(t *testing.T) {
	srv := twiliotest.New(testSID, testToken)
	defer srv.Close()
	cfg := twilioConfig(srv.URL)
	cfg.Timeout = 300 * time.Millisecond
	s, err := NewTwilioSender(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	slow := twiliotest.Fault{Delay: 600 * time.Millisecond}
	tests := []struct {
		name  string
		fault twiliotest.Fault
		check func(error) bool
	}{
		{"21211 invalid", twiliotest.InvalidTo, func(err error) bool {
			var p *PermanentError
			return errors.As(err, &p) && p.Code == 21211 && p.Verdict == contacts.Invalid
		}},
		{"21610 unsubscribed", twiliotest.Unsubscribed, func(err error) bool {
			var p *PermanentError
			return errors.As(err, &p) && p.OptOut
		}},
		{"21614 landline", twiliotest.NotMobile, func(err error) bool {
			var p *PermanentError
			return errors.As(err, &p) && p.Verdict == contacts.Landline
		}},
		{"429 retry-after", twiliotest.Fault{Status: 429, Code: 20429, Message: "Too Many Requests", RetryAfter: "3"}, func(err error) bool {
			var th *ThrottleError
			return errors.As(err, &th) && th.RetryAfter == 3*time.Second
		}},
		{"500", twiliotest.ServerError, transient},
		{"502 html", twiliotest.Fault{Status: 502}, transient},
		{"slow answer", slow, unknownOutcome},
		{"connection broken after the request", twiliotest.Fault{Hangup: true}, unknownOutcome},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.FailNext(1, tt.fault)
			_, err := s.Send(context.Background(), Message{ID: "m", To: "+8613812345678", Body: "x"})
			if !tt.check(err) {
				t.Errorf("Send error %T %v", err, err)
			}
		})
	}
	bad := twilioConfig(srv.URL)
	bad.AuthToken = "wrongtoken"
	s2, _ := NewTwilioSender(bad, zerolog.Nop())
	if _, err := s2.Send(context.Background(), Message{ID: "m", To: "+8613812345678", Body: "x"}); !transient(err) {
		t.Errorf("bad credentials: %T %v, want transient", err, err)
	}
}

// TestTwilioLookupBeforeResend: a send that timed out reached Twilio (the
// test server creates the message and answers late). The retry looks it up
// and takes Twilio's message instead of sending a second one; a message
// Twilio does not hold is sent.
func TestTwilioLookupBeforeResend(t *testing.T) {
	srv := twiliotest.New(testSID, testToken)
	defer srv.Close()
	cfg := twilioConfig(srv.URL)
	cfg.Timeout = 200 * time.Millisecond
	s, err := NewTwilioSender(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	m := Message{ID: "m1", To: "+8613812345678", Body: "停电通知", QueuedAt: time.Now()}
	srv.FailNext(1, twiliotest.Fault{Delay: 500 * time.Millisecond})
	if _, err := s.Send(context.Background(), m); !unknownOutcome(err) {
		t.Fatalf("slow send: %v, want an unknown outcome", err)
	}
	time.Sleep(400 * time.Millisecond) // the slow answer is written
	m.Attempts = 1
	res, err := s.Send(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	got := srv.Received()
	if len(got) != 1 || res.ProviderID != got[0].SID {
		t.Errorf("after the lookup Twilio holds %d messages (result %s), want 1 (%+v)", len(got), res.ProviderID, got)
	}
	other := Message{ID: "m2", To: "+8613812345678", Body: "复电通知", QueuedAt: time.Now(), Attempts: 1}
	if _, err := s.Send(context.Background(), other); err != nil || srv.Count() != 2 || srv.Lookups() != 2 {
		t.Errorf("a retried message Twilio does not hold: err %v, %d messages after %d lookups; want sent, 2, 2", err, srv.Count(), srv.Lookups())
	}
}

// TestTwilioSlowSendsOnce runs the dispatcher against a Twilio that answers
// its first sends after sms.twilio.timeout, or breaks the connection: every
// message goes out once, and the unknown outcomes are counted.
func TestTwilioSlowSendsOnce(t *testing.T) {
	const n = 40
	srv := twiliotest.New(testSID, testToken)
	defer srv.Close()
	srv.FailNext(5, twiliotest.Fault{Delay: 400 * time.Millisecond})
	srv.FailNext(5, twiliotest.Fault{Hangup: true})
	db := storetest.Open(t, "sqlite")
	cfg := crashConfig(srv.URL)
	cfg.Workers = 4
	cfg.Twilio.Timeout = 150 * time.Millisecond
	snd, err := NewSender(cfg, t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOutbox(cfg, QuietHours{}, db, loadRegistry(t, db, n), snd, clock.Real{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Enqueue(context.Background(), nil, loadIntents(n, time.Now())); err != nil {
		t.Fatal(err)
	}
	unknown := o.retries.classes[retryUnknown].n
	before := testutil.ToFloat64(unknown)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- o.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var left int
		db.QueryRow(`SELECT COUNT(*) FROM notify_messages WHERE status <> 'sent'`).Scan(&left)
		if left == 0 && srv.Count() >= n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range srv.Received() {
		seen[m.To]++
	}
	dup := srv.Count() - len(seen)
	t.Logf("%d messages, %d phones, %v unknown outcomes, %d lookups", srv.Count(), len(seen), testutil.ToFloat64(unknown)-before, srv.Lookups())
	if len(seen) != n || dup != 0 {
		t.Errorf("Twilio holds %d messages to %d phones, want %d once each", srv.Count(), len(seen), n)
	}
	// 10 are slow on purpose; on a loaded machine a few more may outlast
	// the timeout too, and each must still be counted and sent once.
	if got := testutil.ToFloat64(unknown) - before; got < 10 {
		t.Errorf("unknown outcomes counted %v, want at least 10", got)
	}
}

func transient(err error) bool {
	var p *PermanentError
	var th *ThrottleError
	return err != nil && !errors.As(err, &p) && !errors.As(err, &th)
}

// TestTwilioOutbox drives the outbox with the real twilio-go client
// against the test server: errors become verdicts, throttles and 5xx are
// retried, on every store backend.
func TestTwilioOutbox(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			srv := twiliotest.New(testSID, testToken)
			defer srv.Close()
			phones := []string{"+8613800000001", "+8613800000002", "+8613800000003", "+8613800000004", "+8613800000005"}
			dir := notifytest.NewDirectory()
			for i, p := range phones {
				dir.Put(notifytest.Resident("010000000"+string(rune('1'+i)), "TA-0101", "zh", p))
			}
			srv.FailTo(phones[0], twiliotest.InvalidTo)
			srv.FailTo(phones[1], twiliotest.Unsubscribed)
			srv.FailTo(phones[2], twiliotest.NotMobile)
			srv.FailNext(1, twiliotest.TooMany)
			srv.FailNext(1, twiliotest.ServerError)
			cfg := Config{Sender: "twilio", Twilio: twilioConfig(srv.URL)}
			snd, err := NewSender(cfg, t.TempDir(), zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			clk := clock.NewFake(at(10, 0))
			o, err := NewOutbox(cfg, QuietHours{Enabled: true}, storetest.Open(t, driver), dir, snd, clk, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			var ins []event.Intent
			for i := range phones {
				ins = append(ins, intent("o"+string(rune('1'+i)), event.KindOutage, "010000000"+string(rune('1'+i)), "OMS-1", outageVars))
			}
			ctx := context.Background()
			if err := o.Enqueue(ctx, nil, ins); err != nil {
				t.Fatal(err)
			}
			for range 5 { // throttle pauses, 5xx backs off: move the clock on
				if _, err := o.runOnce(ctx); err != nil {
					t.Fatal(err)
				}
				clk.Advance(time.Minute)
			}
			if n := srv.Count(); n != 2 {
				t.Errorf("accepted %d, want 2", n)
			}
			if dir.Verdicts[phones[0]] != contacts.Invalid || dir.Verdicts[phones[2]] != contacts.Landline || !dir.OptedOut(phones[1]) {
				t.Errorf("verdicts %v, opted out %v", dir.Verdicts, dir.OptedOut(phones[1]))
			}
			st, _ := o.Stats(ctx, "OMS-1")
			if st.Notified != 2 || !strings.HasPrefix(st.Accounts["0100000001"], "rejected: code 21211") {
				t.Errorf("stats %+v", st)
			}
		})
	}
}
