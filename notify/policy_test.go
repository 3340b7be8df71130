package notify

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/notifytest"
)

func TestQuietHours(t *testing.T) {
	tests := []struct {
		kind event.Kind
		now  time.Time
		held bool
	}{
		{event.KindBalanceLow, at(23, 0), true},
		{event.KindBalanceLow, at(6, 59), true},
		{event.KindBalanceLow, at(7, 0), false},
		{event.KindBalanceLow, at(21, 59), false},
		{event.KindArrears, at(22, 0), true},
		{event.KindPlannedNotice, at(2, 0), true},
		{event.KindDisconnectNotice, at(23, 30), true},
		{event.KindOutage, at(23, 0), false},
		{event.KindETRUpdate, at(3, 0), false},
		{event.KindRestored, at(3, 0), false},
		{event.KindBalanceExhausted, at(23, 0), false},
		{event.KindManagerDigest, at(23, 0), false},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"@"+tt.now.Format("15:04"), func(t *testing.T) {
			dir := notifytest.NewDirectory(notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"))
			h := newHarness(t, "sqlite", dir, tt.now, nil)
			in := intent("k", tt.kind, "0100000001", "R1", map[string]string{"balance": "18.50", "summary": "x"})
			if tt.kind == event.KindManagerDigest {
				in.Account, in.To = "", "+8613900000001"
			}
			if tt.kind == event.KindRestored { // restored needs a told outage
				h.enqueue(intent("o", event.KindOutage, "0100000001", "R1", outageVars))
				h.run()
			}
			h.enqueue(in)
			sent := h.run()
			if held := len(sent) == 0; held != tt.held {
				t.Fatalf("held = %v, want %v", held, tt.held)
			}
			if !tt.held {
				return
			}
			if got := h.stats("R1").Accounts["0100000001"]; got != "held: quiet hours" {
				t.Errorf("status = %q, want held: quiet hours", got)
			}
			// The window ends at 07:00 the next morning, or this morning.
			end := time.Date(tt.now.Year(), tt.now.Month(), tt.now.Day(), 7, 0, 0, 0, shanghai)
			if tt.now.Hour() >= 7 {
				end = end.AddDate(0, 0, 1)
			}
			h.clk.Set(end.Add(-time.Minute))
			if sent := h.run(); len(sent) != 0 {
				t.Fatalf("sent at 06:59")
			}
			h.clk.Set(end)
			if sent := h.run(); len(sent) != 1 {
				t.Fatalf("sent %d at 07:00, want 1", len(sent))
			}
		})
	}
}

func TestConsolidation(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		restoredVars := map[string]string{"area": "TA-0101", "end": "2026-11-26T10:40:00+08:00"}
		t.Run("outage and restored unsent become one", func(t *testing.T) {
			dir := notifytest.NewDirectory(
				notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"),
				notifytest.Resident("0100000002", "TA-0101", "en", "+8613800000002"))
			h := newHarness(t, driver, dir, at(10, 45), nil)
			h.enqueue(intent("o1", event.KindOutage, "0100000001", "OMS-1", outageVars),
				intent("o2", event.KindOutage, "0100000002", "OMS-1", outageVars),
				intent("r1", event.KindRestored, "0100000001", "OMS-1", restoredVars),
				intent("r2", event.KindRestored, "0100000002", "OMS-1", restoredVars))
			sent := h.run()
			if len(sent) != 2 {
				t.Fatalf("sent %d, want 2: %v", len(sent), sent)
			}
			for _, m := range sent {
				if m.Kind != event.KindRestored {
					t.Errorf("kind %s, want restored", m.Kind)
				}
				if !strings.Contains(m.Body, "11月26日09:02至10:40停电，现已恢复供电") &&
					!strings.Contains(m.Body, "from Nov 26 09:02 to 10:40 and is back") {
					t.Errorf("body %q is not the consolidated text", m.Body)
				}
			}
			st := h.stats("OMS-1")
			if st.Notified != 2 || st.Accounts["0100000001"] != StatusSent {
				t.Errorf("stats %+v", st)
			}
		})
		t.Run("a late outage intent for a consolidated phone sends nothing", func(t *testing.T) {
			dir := notifytest.NewDirectory(
				notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"),
				notifytest.Resident("0100000002", "TA-0101", "zh", "+8613800000001"))
			h := newHarness(t, driver, dir, at(10, 45), nil)
			h.enqueue(intent("o1", event.KindOutage, "0100000001", "OMS-1", outageVars),
				intent("r1", event.KindRestored, "0100000001", "OMS-1", restoredVars))
			h.run()
			h.enqueue(intent("o2", event.KindOutage, "0100000002", "OMS-1", outageVars))
			if sent := h.run(); len(sent) != 0 {
				t.Fatalf("sent %v", sent)
			}
			if got := h.stats("OMS-1").Accounts["0100000002"]; got != StatusSent {
				t.Errorf("late account status %q, want sent (told by the consolidated message)", got)
			}
		})
		t.Run("restored after a sent outage is its own message", func(t *testing.T) {
			dir := notifytest.NewDirectory(notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"))
			h := newHarness(t, driver, dir, at(10, 0), nil)
			h.enqueue(intent("o1", event.KindOutage, "0100000001", "OMS-1", outageVars))
			h.run()
			h.enqueue(intent("r1", event.KindRestored, "0100000001", "OMS-1", restoredVars))
			sent := h.run()
			if len(sent) != 1 || !strings.Contains(sent[0].Body, "已于11月26日10:40恢复供电") {
				t.Fatalf("sent %v", sent)
			}
		})
		t.Run("restored only to a phone told of the outage", func(t *testing.T) {
			dir := notifytest.NewDirectory(notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"))
			h := newHarness(t, driver, dir, at(10, 0), nil)
			h.enqueue(intent("r1", event.KindRestored, "0100000001", "OMS-1", restoredVars))
			if sent := h.run(); len(sent) != 0 {
				t.Fatalf("sent %v", sent)
			}
			if got := h.stats("OMS-1").Accounts["0100000001"]; got != "suppressed: not told of the outage" {
				t.Errorf("status %q", got)
			}
		})
		t.Run("several accounts on one phone get one message", func(t *testing.T) {
			dir := notifytest.NewDirectory(
				notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"),
				notifytest.Resident("0100000002", "TA-0101", "zh", "+8613800000001", "+8613800000002"))
			h := newHarness(t, driver, dir, at(10, 0), nil)
			h.enqueue(intent("o1", event.KindOutage, "0100000001", "OMS-1", outageVars),
				intent("o2", event.KindOutage, "0100000002", "OMS-1", outageVars))
			sent := h.run()
			if len(sent) != 2 {
				t.Fatalf("sent %d, want 2 (one per phone)", len(sent))
			}
			for _, m := range sent {
				if m.To == "+8613800000001" && (!strings.Contains(m.Body, "****0001、****0002") || m.Account != "0100000001,0100000002") {
					t.Errorf("shared phone got %q for %q", m.Body, m.Account)
				}
			}
			// A later intent for the same outage and phone sends nothing more.
			h.enqueue(intent("o1-again", event.KindOutage, "0100000001", "OMS-1", outageVars))
			if sent := h.run(); len(sent) != 0 {
				t.Fatalf("second outage sms to one phone: %v", sent)
			}
		})
	})
}

func TestRateLimit(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		dir := notifytest.NewDirectory(notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"))
		h := newHarness(t, driver, dir, at(10, 0), nil)
		for i := range 7 {
			ref := "BILL-" + string(rune('A'+i))
			h.enqueue(intent(ref, event.KindArrears, "0100000001", ref, map[string]string{"amount": "236.40"}))
		}
		for i := range 3 { // safety kinds are exempt
			ref := "OMS-" + string(rune('A'+i))
			h.enqueue(intent(ref, event.KindOutage, "0100000001", ref, outageVars))
		}
		if sent := h.run(); len(sent) != 8 {
			t.Fatalf("sent %d, want 5 arrears + 3 outages", len(sent))
		}
		if got := h.stats("BILL-G").Accounts["0100000001"]; got != "held: rate limit" {
			t.Errorf("7th arrears status %q", got)
		}
		h.clk.Advance(59 * time.Minute)
		if sent := h.run(); len(sent) != 0 {
			t.Fatalf("sent %d within the hour", len(sent))
		}
		h.clk.Advance(time.Minute)
		if sent := h.run(); len(sent) != 2 {
			t.Fatalf("sent %d after the hour, want 2", len(sent))
		}
	})
}

func TestPriorityOrder(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		critical := notifytest.Resident("0100000009", "TA-0101", "zh", "+8613800000009")
		critical.Class = contacts.LifeSupport
		dir := notifytest.NewDirectory(critical,
			notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"),
			notifytest.Resident("0100000002", "TA-0101", "zh", "+8613800000002"))
		h := newHarness(t, driver, dir, at(10, 0), nil)
		h.enqueue(intent("b", event.KindBalanceLow, "0100000001", "BAL-1", map[string]string{"balance": "18.50"}),
			intent("o", event.KindOutage, "0100000002", "OMS-1", outageVars),
			intent("c", event.KindOutage, "0100000009", "OMS-1", outageVars))
		var got []string
		for _, m := range h.run() {
			got = append(got, m.Account)
		}
		if strings.Join(got, " ") != "0100000009 0100000002 0100000001" {
			t.Errorf("send order %v, want critical, outage, billing", got)
		}
	})
}

// forBackends runs f as a subtest on every store backend.
func forBackends(t *testing.T, f func(t *testing.T, driver string)) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) { f(t, driver) })
	}
}

// TestShareRate: an instance of n sharing the Twilio account paces itself
// at sms.twilio.rate / n; the outbox file is not paced.
func TestShareRate(t *testing.T) {
	cfg := Config{Sender: "twilio"}
	cfg.Twilio.Rate = 12
	o := &Outbox{cfg: cfg, pace: newPacer(cfg.Twilio.Rate)}
	for _, c := range []struct {
		n    int
		want float64
	}{{1, 12}, {3, 4}, {0, 12}, {2, 6}} {
		o.ShareRate(c.n)
		if got := o.Rate(); math.Abs(got-c.want) > 1e-6*c.want {
			t.Errorf("ShareRate(%d): Rate() = %v, want %v", c.n, got, c.want)
		}
		if got, want := o.pace.interval, time.Duration(float64(time.Second)/c.want); got != want {
			t.Errorf("ShareRate(%d): pacer interval %v, want %v", c.n, got, want)
		}
	}
	file := &Outbox{cfg: Config{Sender: "outbox"}}
	file.ShareRate(3)
	if file.Rate() != 0 {
		t.Errorf("the outbox file paced at %v", file.Rate())
	}
}
