package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/secret"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

const hookToken = "twilio-auth-token-for-tests"

// inboundServer serves Twilio's reply webhook behind the API, with
// http.trusted_proxies proxies and sms.twilio.inbound_url inboundURL.
func inboundServer(t *testing.T, proxies []string, inboundURL string) (string, *contacts.Registry) {
	t.Helper()
	ctx := context.Background()
	db := storetest.Open(t, "sqlite")
	reg, err := contacts.Open(ctx, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Import(ctx, strings.NewReader(contactsCSV), nil); err != nil {
		t.Fatal(err)
	}
	cfg := notify.Config{Twilio: notify.TwilioConfig{AuthToken: secret.String(hookToken), InboundURL: inboundURL}}
	cfg.Defaults()
	sender, err := notify.NewSender(cfg, t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ob, err := notify.NewOutbox(cfg, notify.QuietHours{}, db, reg, sender, clock.Real{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{TrustedProxies: proxies}, httpapi.AuthConfig{},
		httpapi.Deps{TwilioInbound: ob.InboundWebhook(nil)}, zerolog.Nop()).Handler())
	t.Cleanup(srv.Close)
	return srv.URL, reg
}

var sids int

// reply posts a signed STOP to base, signed for signURL, with headers.
func reply(t *testing.T, base, signURL string, headers map[string]string) int {
	t.Helper()
	sids++
	form := url.Values{"From": {"+8613812345601"}, "Body": {"STOP"}, "MessageSid": {fmt.Sprintf("SM%032d", sids)}}
	req, _ := http.NewRequest("POST", base+"/twilio/inbound", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twiliotest.Sign(hookToken, signURL, form))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func optedOut(reg *contacts.Registry) bool {
	a, _ := reg.Account("0100000001")
	return len(a.Contacts) > 0 && a.Contacts[0].OptOut
}

// X-Forwarded-* are believed only from http.trusted_proxies; with
// sms.twilio.inbound_url set, only that URL is.
func TestForgedForwardingHeaders(t *testing.T) {
	forged := map[string]string{"X-Forwarded-Host": "gridbell.example", "X-Forwarded-Proto": "https"}
	const proxied = "https://gridbell.example/twilio/inbound"

	t.Run("no trusted proxy", func(t *testing.T) {
		base, reg := inboundServer(t, nil, "")
		if code := reply(t, base, proxied, forged); code != http.StatusForbidden || optedOut(reg) {
			t.Fatalf("signed for the forged URL: %d, opted out %v; want 403 and no effect", code, optedOut(reg))
		}
		if code := reply(t, base, base+"/twilio/inbound", forged); code != http.StatusOK || !optedOut(reg) {
			t.Errorf("signed for the URL called: %d, opted out %v; want 200", code, optedOut(reg))
		}
	})
	t.Run("from a trusted proxy", func(t *testing.T) {
		base, reg := inboundServer(t, []string{"127.0.0.0/8"}, "")
		if code := reply(t, base, proxied, forged); code != http.StatusOK || !optedOut(reg) {
			t.Errorf("signed for the proxy's URL: %d, opted out %v; want 200", code, optedOut(reg))
		}
	})
	t.Run("from an untrusted peer", func(t *testing.T) {
		base, reg := inboundServer(t, []string{"10.0.0.0/8"}, "")
		if code := reply(t, base, proxied, forged); code != http.StatusForbidden || optedOut(reg) {
			t.Errorf("signed for the forged URL: %d, opted out %v; want 403", code, optedOut(reg))
		}
	})
	t.Run("configured URL", func(t *testing.T) {
		const configured = "https://sms.gridbell.example/twilio/inbound"
		base, reg := inboundServer(t, []string{"127.0.0.0/8"}, configured)
		if code := reply(t, base, proxied, forged); code != http.StatusForbidden || optedOut(reg) {
			t.Fatalf("signed for the forwarded URL: %d, opted out %v; want 403", code, optedOut(reg))
		}
		if code := reply(t, base, configured, forged); code != http.StatusOK || !optedOut(reg) {
			t.Errorf("signed for the configured URL: %d, opted out %v; want 200", code, optedOut(reg))
		}
	})
}
