package httpapi_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/gridbell/gridbell/internal/care"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// TestCareAPI: the reliability report (JSON and CSV), a customer's
// profile, the follow-up list and an outage's proactive block, each cut
// to a manager's grids; a hotline lookup of a customer in an outage counts
// as that customer's call and shows the customer's tags.
func TestCareAPI(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver, worldCSV)
			w.outage("OMS-C1", "TA-1", "TA-2") // across G01 and G02, begun 10 minutes ago
			w.sent(1)
			ctx := context.Background()
			if _, err := w.care.Step(ctx); err != nil {
				t.Fatal(err)
			}
			admin, mgr, sun := w.as(tokAdmin), w.as(tokMgr), w.login("sun")

			var hl struct{ Customers []httpapi.HotlineCustomer }
			if code := w.as(tokHotline).do("GET", "/api/v1/hotline?q=0100000001", "", &hl); code != 200 || len(hl.Customers) != 1 {
				t.Fatalf("hotline = %d %+v", code, hl)
			}
			if c := hl.Customers[0]; !c.InOutage || strings.Join(c.Tags, ",") != "frequent_outage,complaint_risk" || c.Profile == nil || c.Profile.HotlineContacts90d != 1 {
				t.Errorf("hotline customer = %+v, want in the outage, tagged, with this call counted", c)
			}

			var o httpapi.OutageView
			for _, tc := range []struct {
				c                *client
				affected, called int
			}{{admin, 8, 1}, {mgr, 6, 1}, {sun, 2, 0}} {
				if code := tc.c.do("GET", "/api/v1/outages/OMS-C1", "", &o); code != 200 || o.Proactive == nil {
					t.Fatalf("GET outage = %d %+v", code, o)
				}
				if o.Proactive.Affected != tc.affected || o.Proactive.Called != tc.called {
					t.Errorf("proactive = %+v, want %d affected, %d called", *o.Proactive, tc.affected, tc.called)
				}
			}

			var rep care.Report
			if code := mgr.do("GET", "/api/v1/reliability?by=grid", "", &rep); code != 200 || len(rep.Rows) != 1 || rep.Rows[0].Key != "G01" || rep.Rows[0].Interruptions != 6 {
				t.Errorf("reliability for G01's manager = %d %+v, want G01's row alone, 6 interruptions", code, rep)
			}
			if code := admin.do("GET", "/api/v1/reliability?by=area", "", &rep); code != 200 || len(rep.Rows) != 2 || rep.Total.Interruptions != 8 {
				t.Errorf("reliability by area for an admin = %d %+v, want TA-1 and TA-2, 8 interruptions", code, rep)
			}
			if code, _ := admin.raw("GET", "/api/v1/reliability?by=street", ""); code != 400 {
				t.Errorf("reliability by street = %d, want 400", code)
			}
			code, b := mgr.raw("GET", "/api/v1/reliability?format=csv", "")
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if code != 200 || !strings.HasPrefix(string(b), "\xEF\xBB\xBFgrid,customers_served,") || len(lines) != 3 || !strings.HasPrefix(lines[1], "G01,6,6,") {
				t.Errorf("reliability CSV for G01's manager = %d\n%s\nwant a BOM, the header, G01 and the total", code, b)
			}

			var pr httpapi.ProfileView
			if code := mgr.do("GET", "/api/v1/customers/0100000011/profile", "", nil); code != 404 {
				t.Errorf("G01's manager asks the profile of a G02 customer: %d, want 404", code)
			}
			if code := sun.do("GET", "/api/v1/customers/0100000011/profile", "", &pr); code != 200 || pr.Outages.D30 != 1 || pr.Grid != "G02" {
				t.Errorf("G02's manager asks its customer's profile: %d %+v", code, pr)
			}

			var fu struct{ Customers []care.FollowupCustomer }
			for _, tc := range []struct {
				c    *client
				want string
			}{{admin, "0100000003"}, {mgr, "0100000003"}, {sun, "0100000011"}} {
				if code := tc.c.do("GET", "/api/v1/outages/OMS-C1/followup", "", &fu); code != 200 || len(fu.Customers) == 0 || fu.Customers[0].Account != tc.want {
					t.Errorf("followup = %d %+v, want %s first (life support, then high risk)", code, fu, tc.want)
				}
				for _, c := range fu.Customers {
					if tc.c == mgr && c.Grid != "G01" || tc.c == sun && c.Grid != "G02" {
						t.Errorf("followup for a manager shows %s of %s", c.Account, c.Grid)
					}
				}
			}
			resp := mgr.resp("GET", "/api/v1/outages/OMS-C1/followup?format=csv", "")
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if cd := resp.Header.Get("Content-Disposition"); resp.StatusCode != 200 || !strings.Contains(cd, `filename="followup-OMS-C1.csv"`) ||
				!strings.HasPrefix(string(body), "\xEF\xBB\xBFaccount,name,grid,") || strings.Contains(string(body), ",G02,") {
				t.Errorf("follow-up CSV for G01's manager = %d %q\n%s\nwant followup-OMS-C1.csv, a BOM and the header, G01's customers alone", resp.StatusCode, cd, body)
			}
			code, b = mgr.raw("GET", "/api/v1/outages/OMS-C1/customers?format=csv", "")
			if head, _, _ := strings.Cut(string(b), "\n"); code != 200 || !strings.HasSuffix(head, ",tags") || !strings.Contains(string(b), "frequent_outage complaint_risk") {
				t.Errorf("customers CSV = %d\n%s\nwant a tags column with the tags", code, b)
			}
		})
	}
}
