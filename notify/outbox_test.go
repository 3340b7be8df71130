package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/notifytest"
)

// TestOutboxFile runs the demo path: outage, restored and balance_low
// through the outbox file, on every store backend.
func TestOutboxFile(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			dir := notifytest.NewDirectory(notifytest.Resident("0100012345", "TA-0101", "zh", "+8613812345678"))
			path := filepath.Join(t.TempDir(), "outbox.jsonl")
			snd, err := NewSender(Config{OutboxFile: path}, t.TempDir(), zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			clk := clock.NewFake(at(10, 0))
			o, err := NewOutbox(Config{}, QuietHours{Enabled: true}, db, dir, snd, clk, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			sent0 := testutil.ToFloat64(smsTotal.WithLabelValues("outage", StatusSent))
			waited0 := metrics.Count(intentToSent.WithLabelValues("outage"))
			ctx := context.Background()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			ins := []event.Intent{
				intent("o1", event.KindOutage, "0100012345", "OMS-1", outageVars),
				intent("o1", event.KindOutage, "0100012345", "OMS-1", outageVars), // duplicate key: ignored
				intent("b1", event.KindBalanceLow, "0100012345", "BAL-1", map[string]string{"balance": "18.50"}),
			}
			if err := o.Enqueue(ctx, tx, ins); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if _, err := o.runOnce(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(40 * 60e9)
			restored := intent("r1", event.KindRestored, "0100012345", "OMS-1", map[string]string{"area": "TA-0101", "end": "2026-11-26T10:40:00+08:00"})
			restored.CreatedAt = clk.Now()
			if err := o.Enqueue(ctx, nil, []event.Intent{restored}); err != nil {
				t.Fatal(err)
			}
			if _, err := o.runOnce(ctx); err != nil {
				t.Fatal(err)
			}
			lines := readOutbox(t, path)
			var kinds []string
			for _, l := range lines {
				kinds = append(kinds, l["kind"])
				if l["to"] != "+8613812345678" || l["account"] != "0100012345" || l["id"] == "" || l["queued_at"] == "" || l["sent_at"] == "" {
					t.Errorf("bad outbox line %v", l)
				}
			}
			if got := strings.Join(kinds, ","); got != "outage,balance_low,restored" {
				t.Fatalf("outbox kinds = %s, want outage,balance_low,restored", got)
			}
			if b := lines[0]["body"]; !strings.Contains(b, "****2345") || !strings.Contains(b, "11月26日09:02") || !strings.Contains(b, "95598") {
				t.Errorf("outage body = %q", b)
			}
			st, err := o.Stats(ctx, "OMS-1")
			if err != nil {
				t.Fatal(err)
			}
			if st.Notified != 1 || st.Accounts["0100012345"] != StatusSent {
				t.Errorf("Stats = %+v", st)
			}
			if got := testutil.ToFloat64(smsTotal.WithLabelValues("outage", StatusSent)) - sent0; got != 1 {
				t.Errorf("gridbell_sms_total{kind=outage,status=sent} rose by %v, want 1", got)
			}
			if got := metrics.Count(intentToSent.WithLabelValues("outage")) - waited0; got != 1 {
				t.Errorf("gridbell_sms_intent_to_sent_seconds{kind=outage} got %d observations, want 1", got)
			}
		})
	}
}

// readOutbox reads the outbox file and checks each line's fields are
// exactly docs/interfaces.md §4's, in order.
func readOutbox(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		var keys []string
		dec.Token()
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			dec.Token()
		}
		if got := strings.Join(keys, ","); got != "id,to,account,kind,ref,body,queued_at,sent_at" {
			t.Fatalf("outbox fields = %s", got)
		}
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestContactPolicy(t *testing.T) {
	valid := func(p string) contacts.Contact { return contacts.Contact{Phone: p, Verdict: contacts.Valid} }
	tests := []struct {
		name     string
		acct     *contacts.Account
		wantSent int
		want     string
	}{
		{"valid", &contacts.Account{Contacts: []contacts.Contact{valid("+8613800000001")}}, 1, "sent"},
		{"fixed and landline", &contacts.Account{Contacts: []contacts.Contact{
			{Phone: "+862088888888", Verdict: contacts.Landline}, {Phone: "+8613800000002", Verdict: contacts.Fixed}}}, 1, "sent"},
		{"landline", &contacts.Account{Contacts: []contacts.Contact{{Phone: "+862088888888", Verdict: contacts.Landline}}}, 0,
			"suppressed: no valid phone: landline"},
		{"invalid", &contacts.Account{Contacts: []contacts.Contact{{Raw: "无", Verdict: contacts.Invalid}}}, 0,
			"suppressed: no valid phone: invalid number"},
		{"opted out", &contacts.Account{Contacts: []contacts.Contact{{Phone: "+8613800000003", Verdict: contacts.Valid, OptOut: true}}}, 0,
			"suppressed: no valid phone: opted out"},
		{"no contacts", &contacts.Account{}, 0, "suppressed: no valid phone: no phone"},
		{"retired", &contacts.Account{Retired: true, Contacts: []contacts.Contact{valid("+8613800000004")}}, 0, "suppressed: retired account"},
		{"unknown account", nil, 0, "suppressed: unknown account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := notifytest.NewDirectory()
			if tt.acct != nil {
				tt.acct.Account = "0100000001"
				dir.Put(*tt.acct)
			}
			h := newHarness(t, "sqlite", dir, at(10, 0), nil)
			h.enqueue(intent("k", event.KindOutage, "0100000001", "OMS-1", outageVars))
			if sent := h.run(); len(sent) != tt.wantSent {
				t.Fatalf("sent %d messages, want %d", len(sent), tt.wantSent)
			}
			if got := h.stats("OMS-1").Accounts["0100000001"]; got != tt.want {
				t.Errorf("status = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLanguages(t *testing.T) {
	dir := notifytest.NewDirectory(
		notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"),
		notifytest.Resident("0100000002", "TA-0101", "en", "+8613800000002"))
	h := newHarness(t, "sqlite", dir, at(10, 0), nil)
	h.enqueue(intent("a", event.KindOutage, "0100000001", "OMS-1", outageVars),
		intent("b", event.KindOutage, "0100000002", "OMS-1", outageVars))
	sent := h.run()
	if len(sent) != 2 {
		t.Fatalf("sent %d, want 2", len(sent))
	}
	for _, m := range sent {
		n, enc := Segments(m.Body)
		switch m.To {
		case "+8613800000001":
			if enc != UCS2 || !strings.Contains(m.Body, "停电") || n > 2 {
				t.Errorf("zh body %q (%d %s)", m.Body, n, enc)
			}
		case "+8613800000002":
			if enc != GSM7 || !strings.Contains(m.Body, "Power cut since Nov 26 09:02") || n > 2 {
				t.Errorf("en body %q (%d %s)", m.Body, n, enc)
			}
		}
	}
}

func TestSegments(t *testing.T) {
	f := func(body string, wantN int, wantEnc string) {
		t.Helper()
		if n, enc := Segments(body); n != wantN || enc != wantEnc {
			t.Errorf("Segments(%d runes %.20q) = %d %s, want %d %s", len([]rune(body)), body, n, enc, wantN, wantEnc)
		}
	}
	f("", 1, GSM7)
	f(strings.Repeat("a", 160), 1, GSM7)
	f(strings.Repeat("a", 161), 2, GSM7)
	f(strings.Repeat("a", 306), 2, GSM7)
	f(strings.Repeat("a", 307), 3, GSM7)
	f(strings.Repeat("€", 80), 1, GSM7) // extension characters take two septets
	f(strings.Repeat("€", 81), 2, GSM7)
	f(strings.Repeat("停", 70), 1, UCS2)
	f(strings.Repeat("停", 71), 2, UCS2)
	f(strings.Repeat("停", 134), 2, UCS2)
	f(strings.Repeat("停", 135), 3, UCS2)
	f(strings.Repeat("a", 69)+"停", 1, UCS2)
	f(strings.Repeat("😀", 35), 1, UCS2) // surrogate pairs count twice
	f(strings.Repeat("😀", 36), 2, UCS2)
}

func TestTemplateOverride(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "zh"), 0o755)
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(dir, "zh", "balance_low.txt"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("余额{{.balance}}元，请充值。{{.hotline}}")
	tpl, err := LoadTemplates(dir, shanghai)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tpl.Render("zh", "balance_low", map[string]string{"balance": "18.50", "hotline": "95598"}); got != "余额18.50元，请充值。95598" {
		t.Errorf("override rendered %q", got)
	}
	write(strings.Repeat("您的电费余额不足", 17) + "{{.balance}}")
	if _, err := LoadTemplates(dir, shanghai); err == nil || !strings.Contains(err.Error(), "zh/balance_low needs 3 UCS-2 segments") {
		t.Errorf("a 3-segment template loaded: %v", err)
	}
}
