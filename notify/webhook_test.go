package notify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/notifytest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

// post sends form to h as Twilio would, signed for signURL with token
// ("" = no signature header).
func post(h http.Handler, target, signURL, token string, form url.Values) int {
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		r.Header.Set("X-Twilio-Signature", twiliotest.Sign(token, signURL, form))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func TestStatusWebhook(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) { testStatusWebhook(t, driver) })
	}
}

func testStatusWebhook(t *testing.T, driver string) {
	dir := notifytest.NewDirectory(
		notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"),
		notifytest.Resident("0100000002", "TA-0101", "zh", "+8613800000002"))
	h := newHarness(t, driver, dir, at(10, 0), func(c *Config, _ *QuietHours) {
		c.Twilio = twilioConfig("https://api.twilio.com")
	})
	h.enqueue(intent("o1", event.KindOutage, "0100000001", "OMS-1", outageVars))
	sent := h.run()
	sid := "SM" + sent[0].ID
	cb := h.o.cfg.Twilio.StatusCallback
	wh := h.o.StatusWebhook()
	form := url.Values{"MessageSid": {sid}, "MessageStatus": {"delivered"}, "To": {"+8613800000001"}}
	tests := []struct {
		name, token, signURL string
		want                 int
	}{
		{"missing signature", "", cb, http.StatusForbidden},
		{"bad signature", "wrongtoken", cb, http.StatusForbidden},
		{"signed for another url", testToken, "https://evil.example/twilio/status", http.StatusForbidden},
		{"good signature", testToken, cb, http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := post(wh, "/twilio/status", tt.signURL, tt.token, form); code != tt.want {
				t.Fatalf("status %d, want %d", code, tt.want)
			}
			st := h.stats("OMS-1")
			if delivered := st.Delivered == 1; delivered != (tt.want == http.StatusNoContent) {
				t.Errorf("delivered = %v after %s", delivered, tt.name)
			}
		})
	}
	t.Run("receipt before the send is recorded", func(t *testing.T) {
		in := intent("o2", event.KindOutage, "0100000002", "OMS-1", outageVars)
		early := "SM" + msgID(msgKey(in, "+8613800000002")) // what the recorder will answer
		if code := post(wh, "/twilio/status", cb, testToken, url.Values{"MessageSid": {early}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30003"}}); code != http.StatusNoContent {
			t.Fatalf("status %d", code)
		}
		h.enqueue(in)
		h.run()
		if got := h.stats("OMS-1").Accounts["0100000002"]; got != "undelivered: twilio error 30003" {
			t.Errorf("status after an early receipt: %q", got)
		}
		if v, ok := dir.Verdicts["+8613800000002"]; ok {
			t.Errorf("a passing delivery error (30003) gave the number verdict %q", v)
		}
	})
	t.Run("carrier says landline", func(t *testing.T) {
		f := url.Values{"MessageSid": {sid}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30006"}, "To": {"+8613800000001"}}
		if code := post(wh, "/twilio/status", cb, testToken, f); code != http.StatusNoContent {
			t.Fatalf("status %d", code)
		}
		if v := dir.Verdicts["+8613800000001"]; v != contacts.Landline {
			t.Errorf("verdict after 30006 = %q, want landline", v)
		}
	})
}

type stillOut struct {
	phone    string
	accounts []string
}

func (s *stillOut) ReportStillOut(_ context.Context, phone string, accounts []string) error {
	s.phone, s.accounts = phone, accounts
	return nil
}

func TestInboundWebhook(t *testing.T) {
	const phone = "+8613800000001"
	dir := notifytest.NewDirectory(notifytest.Resident("0100000001", "TA-0101", "zh", phone))
	h := newHarness(t, "sqlite", dir, at(23, 0), func(c *Config, _ *QuietHours) {
		c.Twilio = twilioConfig("https://api.twilio.com")
	})
	sink := &stillOut{}
	wh := h.o.InboundWebhook(sink)
	// Rebuilt URL: no inbound_url configured, behind a TLS proxy.
	signURL := "https://gridbell.example/twilio/inbound"
	n := 0
	send := func(body, token string) int {
		n++
		form := url.Values{"From": {phone}, "Body": {body}, "MessageSid": {fmt.Sprintf("SM%032d", n)}}
		r := httptest.NewRequest(http.MethodPost, "http://gridbell.example/twilio/inbound", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("X-Forwarded-Proto", "https")
		if token != "" {
			r.Header.Set("X-Twilio-Signature", twiliotest.Sign(token, signURL, form))
		}
		w := httptest.NewRecorder()
		wh.ServeHTTP(w, r)
		return w.Code
	}
	if code := send("STOP", "wrongtoken"); code != http.StatusForbidden || dir.OptedOut(phone) {
		t.Fatalf("bad signature: %d, opted out %v", code, dir.OptedOut(phone))
	}
	if code := send("STOP", ""); code != http.StatusForbidden {
		t.Fatalf("missing signature: %d", code)
	}
	// A balance_low held for quiet hours is suppressed by 退订.
	h.enqueue(intent("b1", event.KindBalanceLow, "0100000001", "BAL-1", map[string]string{"balance": "18.50"}))
	h.run()
	if code := send(" 退订 ", testToken); code != http.StatusOK || !dir.OptedOut(phone) {
		t.Fatalf("退订: %d, opted out %v", code, dir.OptedOut(phone))
	}
	if got := h.stats("BAL-1").Accounts["0100000001"]; got != "suppressed: opted out" {
		t.Errorf("held message after STOP: %q", got)
	}
	if code := send("start", testToken); code != http.StatusOK || dir.OptedOut(phone) {
		t.Fatalf("START: %d, opted out %v", code, dir.OptedOut(phone))
	}
	if code := send("TD", testToken); code != http.StatusOK || !dir.OptedOut(phone) {
		t.Fatalf("TD: %d", code)
	}
	if code := send("停电", testToken); code != http.StatusOK || sink.phone != phone || len(sink.accounts) != 1 || sink.accounts[0] != "0100000001" {
		t.Fatalf("停电: %d, sink %+v", code, sink)
	}
}

// Each MessageSid takes effect once (docs/interfaces.md §4), on both stores: a
// captured START replayed after a STOP does not opt the customer back in,
// and a replayed receipt does not overwrite a newer one.
func TestWebhookReplay(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) { testWebhookReplay(t, driver) })
	}
}

func testWebhookReplay(t *testing.T, driver string) {
	const phone = "+8613800000001"
	dir := notifytest.NewDirectory(notifytest.Resident("0100000001", "TA-0101", "zh", phone),
		notifytest.Resident("0100000002", "TA-0101", "zh", "+8613800000002"))
	h := newHarness(t, driver, dir, at(10, 0), func(c *Config, _ *QuietHours) {
		c.Twilio = twilioConfig("https://api.twilio.com")
		c.Twilio.InboundURL = "https://gridbell.example/twilio/inbound"
	})
	sink := &stillOut{}
	in := h.o.InboundWebhook(sink)
	reply := func(sid, body string) url.Values {
		return url.Values{"From": {phone}, "Body": {body}, "MessageSid": {sid}}
	}
	start := reply("SM00000000000000000000000000000001", "START")
	steps := []struct {
		name     string
		form     url.Values
		optedOut bool
	}{
		{"STOP", reply("SM00000000000000000000000000000000", "STOP"), true},
		{"START", start, false},
		{"STOP again", reply("SM00000000000000000000000000000002", "STOP"), true},
		{"START replayed", start, true},
	}
	for _, s := range steps {
		if code := post(in, "/twilio/inbound", h.o.cfg.Twilio.InboundURL, testToken, s.form); code != http.StatusOK {
			t.Fatalf("%s: status %d", s.name, code)
		}
		if got := dir.OptedOut(phone); got != s.optedOut {
			t.Fatalf("after %s: opted out %v, want %v", s.name, got, s.optedOut)
		}
	}
	out := reply("SM00000000000000000000000000000003", "OUT")
	post(in, "/twilio/inbound", h.o.cfg.Twilio.InboundURL, testToken, out)
	sink.phone = ""
	post(in, "/twilio/inbound", h.o.cfg.Twilio.InboundURL, testToken, out)
	if sink.phone != "" {
		t.Errorf("a replayed OUT was reported again")
	}
	if code := post(in, "/twilio/inbound", h.o.cfg.Twilio.InboundURL, testToken, url.Values{"From": {phone}, "Body": {"START"}}); code != http.StatusBadRequest || !dir.OptedOut(phone) {
		t.Errorf("a reply without MessageSid: status %d, opted out %v; want 400 and no effect", code, dir.OptedOut(phone))
	}

	h.enqueue(intent("o1", event.KindOutage, "0100000002", "OMS-1", outageVars))
	sid := "SM" + h.run()[0].ID
	cb, st := h.o.cfg.Twilio.StatusCallback, h.o.StatusWebhook()
	failed := url.Values{"MessageSid": {sid}, "MessageStatus": {"failed"}, "ErrorCode": {"30008"}}
	for _, f := range []url.Values{failed, {"MessageSid": {sid}, "MessageStatus": {"delivered"}}, failed} {
		if code := post(st, "/twilio/status", cb, testToken, f); code != http.StatusNoContent {
			t.Fatalf("receipt %v: status %d", f, code)
		}
	}
	if got := h.stats("OMS-1").Accounts["0100000002"]; got != StatusDelivered {
		t.Errorf("after a replayed failed receipt the message is %q, want delivered", got)
	}
}

// The signature header is judged before any body is read: a request
// without a well-formed one is refused with its body unread.
func TestWebhookSignatureBeforeBody(t *testing.T) {
	h := newHarness(t, "sqlite", notifytest.NewDirectory(), at(10, 0), func(c *Config, _ *QuietHours) {
		c.Twilio = twilioConfig("https://api.twilio.com")
	})
	for _, sig := range []string{"", "not base64!", "c2hvcnQ=", strings.Repeat("A", 44)} {
		for _, wh := range []http.Handler{h.o.StatusWebhook(), h.o.InboundWebhook(nil)} {
			body := &untouched{}
			r := httptest.NewRequest(http.MethodPost, "/twilio/inbound", body)
			if sig != "" {
				r.Header.Set("X-Twilio-Signature", sig)
			}
			w := httptest.NewRecorder()
			wh.ServeHTTP(w, r)
			if w.Code != http.StatusForbidden || body.read || w.Header().Get("Connection") != "close" {
				t.Errorf("signature %q: status %d, body read %v, Connection %q; want 403 unread, close",
					sig, w.Code, body.read, w.Header().Get("Connection"))
			}
		}
	}
}

// untouched is a request body that records whether anyone read it.
type untouched struct{ read bool }

func (u *untouched) Read(p []byte) (int, error) {
	u.read = true
	return 0, io.EOF
}
