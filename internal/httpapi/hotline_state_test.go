package httpapi_test

import (
	"testing"

	"github.com/gridbell/gridbell/internal/httpapi"
)

// TestHotlineOneState has a customer's meter come back while its outage
// goes on for others: the hotline then answers one state, back, with
// in_outage false and powered true, while a neighbour still dark is out,
// in_outage and not powered.
func TestHotlineOneState(t *testing.T) {
	w := stormWorld(t)
	hot := w.login("hot")
	lookup := func(acct string) httpapi.HotlineCustomer {
		t.Helper()
		var d struct{ Customers []httpapi.HotlineCustomer }
		if code := hot.do("GET", "/api/v1/hotline?q="+acct, "", &d); code != 200 || len(d.Customers) != 1 {
			t.Fatalf("lookup %s = %d %+v", acct, code, d)
		}
		return d.Customers[0]
	}
	if c := lookup("0100000001"); c.State != "out" || !c.InOutage || c.Powered {
		t.Errorf("before its meter is back: state %q, in_outage %v, powered %v; want out, true, false", c.State, c.InOutage, c.Powered)
	}
	w.powerOn("330000000001")
	c := lookup("0100000001")
	if c.State != "back" || c.InOutage || !c.Powered {
		t.Errorf("meter back, outage on: state %q, in_outage %v, powered %v; want back, false, true", c.State, c.InOutage, c.Powered)
	}
	if c.Outage == nil || c.Outage.ID != "OMS-W-1" || c.Outage.Status != "active" {
		t.Errorf("meter back: outage = %+v, want OMS-W-1 still active", c.Outage)
	}
	if n := lookup("0100000002"); n.State != "out" || !n.InOutage || n.Powered {
		t.Errorf("neighbour still dark: state %q, in_outage %v, powered %v; want out, true, false", n.State, n.InOutage, n.Powered)
	}
}
