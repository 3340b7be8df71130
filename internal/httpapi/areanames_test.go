package httpapi_test

import (
	"strings"
	"testing"

	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/rules"
)

// namedCSV is worldCSV with an area_name column naming TA-1 and not TA-2.
var namedCSV = func() string {
	lines := strings.Split(strings.TrimSuffix(worldCSV, "\n"), "\n")
	lines[0] += ",area_name"
	for i := 1; i < len(lines); i++ {
		if strings.Contains(lines[i], ",TA-1,") {
			lines[i] += ",幸福里1号台区"
		} else {
			lines[i] += ","
		}
	}
	return strings.Join(lines, "\n") + "\n"
}()

// TestAreaNamesShown imports contacts naming TA-1: the outage API answers
// area_names with it (and nothing for the unnamed TA-2), the storm tiles
// carry it, and the zh manager digest SMS names the area "name(code)".
func TestAreaNamesShown(t *testing.T) {
	w := newWorld(t, "sqlite", namedCSV)
	w.outage("OMS-N-1", "TA-1", "TA-2")
	sent := w.sent(7)
	var digest string
	for _, m := range sent {
		if m["kind"] == "manager_digest" && m["to"] == "+8613900000101" {
			digest = m["body"]
		}
	}
	if !strings.Contains(digest, "（幸福里1号台区(TA-1)") {
		t.Errorf("G01's digest = %q, want the area as 幸福里1号台区(TA-1); sent %+v", digest, sent)
	}
	admin := w.as(tokAdmin)
	var o rules.Outage
	if code := admin.do("GET", "/api/v1/outages/OMS-N-1", "", &o); code != 200 {
		t.Fatalf("outage = %d", code)
	}
	if len(o.AreaNames) != 1 || o.AreaNames["TA-1"] != "幸福里1号台区" {
		t.Errorf("area_names = %v, want TA-1 named alone", o.AreaNames)
	}
	var list struct{ Outages []rules.Outage }
	if admin.do("GET", "/api/v1/outages?status=active", "", &list); len(list.Outages) != 1 || list.Outages[0].AreaNames["TA-1"] != "幸福里1号台区" {
		t.Errorf("outage list = %+v, want OMS-N-1 with TA-1's name", list.Outages)
	}
	var st httpapi.Storm
	if code := admin.do("GET", "/api/v1/storm", "", &st); code != 200 {
		t.Fatalf("storm = %d", code)
	}
	names := map[string]string{}
	for _, g := range st.Grids {
		for _, f := range g.Feeders {
			for _, a := range f.Areas {
				names[a.Area] = a.Name
			}
		}
	}
	if names["TA-1"] != "幸福里1号台区" || names["TA-2"] != "" {
		t.Errorf("storm tiles' names = %v", names)
	}
}
