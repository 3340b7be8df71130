package notify

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

const registryFile = `account,name,meter,concentrator,area,feeder,grid,manager,manager_phone,class,prepaid,phone,phone2,language,opt_out
0100000001,张三,330000000001,C-0001,TA-0101,F-01,G01,王经理,13900000001,居民,否,138 0000 0001,,zh,否
0100000002,Acme Hospital,330000000002,C-0001,TA-0101,F-01,G01,王经理,13900000001,high_risk,否,+86 138 0000 0002,020-88881234,en,否
0100000003,李四,330000000003,C-0001,TA-0101,F-01,G01,王经理,13900000001,居民,否,020-88886666,,zh,否
0100000004,王五,330000000004,C-0001,TA-0101,F-01,G01,王经理,13900000001,居民,否,无,,zh,否
0100000005,赵六,330000000005,C-0001,TA-0101,F-01,G01,王经理,13900000001,居民,否,13800000005,,zh,是
0100000006,张三,330000000006,C-0001,TA-0101,F-01,G01,王经理,13900000001,居民,否,13800000001,,zh,否
0100000007,钱七,330000000007,C-0001,TA-0101,F-01,G01,王经理,13900000001,居民,否,13800000007,,zh,否
`

func openRegistry(t *testing.T, driver string) (*contacts.Registry, *store.DB) {
	t.Helper()
	db := storetest.Open(t, driver)
	reg, err := contacts.Open(context.Background(), db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Import(context.Background(), strings.NewReader(registryFile), io.Discard); err != nil {
		t.Fatal(err)
	}
	return reg, db
}

// TestRegistry runs the outbox against the real contacts registry on every
// backend: verdicts from the import, Twilio errors and STOP replies.
func TestRegistry(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			reg, db := openRegistry(t, driver)
			srv := twiliotest.New(testSID, testToken)
			defer srv.Close()
			srv.FailTo("+8613800000007", twiliotest.InvalidTo)
			cfg := Config{Sender: "twilio", Twilio: twilioConfig(srv.URL)}
			snd, err := NewSender(cfg, t.TempDir(), zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			clk := clock.NewFake(at(10, 0))
			o, err := NewOutbox(cfg, QuietHours{Enabled: true}, db, reg, snd, clk, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var ins []event.Intent
			for _, a := range []string{"0100000001", "0100000002", "0100000003", "0100000004", "0100000005", "0100000006", "0100000007"} {
				ins = append(ins, intent("outage/OMS-1/"+a, event.KindOutage, a, "OMS-1", outageVars))
			}
			if err := o.Enqueue(ctx, nil, ins); err != nil {
				t.Fatal(err)
			}
			if _, err := o.runOnce(ctx); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, m := range srv.Received() {
				got[m.To] = m.Body
			}
			if len(got) != 2 || !strings.Contains(got["+8613800000001"], "****0001、****0006") ||
				!strings.HasPrefix(got["+8613800000002"], "Power cut since") {
				t.Errorf("sent %v", got)
			}
			st, err := o.Stats(ctx, "OMS-1")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"0100000001": "sent", "0100000002": "sent", "0100000006": "sent",
				"0100000003": "suppressed: no valid phone: landline",
				"0100000004": "suppressed: no valid phone: invalid number",
				"0100000005": "suppressed: no valid phone: opted out",
				"0100000007": "rejected: code 21211: The 'To' number is not a valid phone number.",
			}
			for a, w := range want {
				if st.Accounts[a] != w {
					t.Errorf("account %s: %q, want %q", a, st.Accounts[a], w)
				}
			}
			if st.Notified != 3 {
				t.Errorf("notified %d, want 3", st.Notified)
			}
			// 21211 is kept in the registry.
			a, _ := reg.Account("0100000007")
			if len(a.Contacts) != 1 || a.Contacts[0].Verdict != contacts.Invalid {
				t.Errorf("contacts after 21211: %+v", a.Contacts)
			}
			// A signed STOP opts the number out in the registry.
			form := url.Values{"From": {"+8613800000001"}, "Body": {"STOP"}, "MessageSid": {"SM00000000000000000000000000000001"}}
			inbound := "https://gridbell.example/twilio/inbound"
			o.cfg.Twilio.InboundURL = inbound
			if code := post(o.InboundWebhook(nil), "/twilio/inbound", inbound, testToken, form); code != http.StatusOK {
				t.Fatalf("STOP: %d", code)
			}
			a, _ = reg.Account("0100000006")
			if !a.Contacts[0].OptOut {
				t.Errorf("not opted out after STOP: %+v", a.Contacts)
			}
			clk.Advance(time.Hour)
			if err := o.Enqueue(ctx, nil, []event.Intent{intent("etr/1", event.KindETRUpdate, "0100000006", "OMS-1", outageVars)}); err != nil {
				t.Fatal(err)
			}
			n := srv.Count()
			o.runOnce(ctx)
			if srv.Count() != n {
				t.Errorf("an opted-out number was sent to")
			}
		})
	}
}
