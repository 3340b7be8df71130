package notify

import (
	"strings"
	"testing"
)

// TestRecentOutagesApology: with recent_outages (customer care, a
// customer's Nth sustained interruption within the window, at or over the
// frequent-outage line) the outage SMS says so and apologises, in both
// languages, within the two segments a template may take; without it the
// text is the storm's one-segment message.
func TestRecentOutagesApology(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"zh": "近60天第3次停电，深表歉意。", "en": "Sorry: outage 3 for you in 60 days."}
	for _, lang := range languages {
		for _, etr := range []bool{true, false} {
			vars := typicalVars(lang)
			vars["accounts"] = vars["account"]
			if !etr {
				delete(vars, "etr")
			}
			plain, err := tpl.Render(lang, "outage", vars)
			if err != nil {
				t.Fatal(err)
			}
			vars["recent_outages"], vars["recent_days"] = "3", "60"
			body, err := tpl.Render(lang, "outage", vars)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(body, want[lang]) || strings.Contains(plain, want[lang]) {
				t.Errorf("%s outage (etr %v) with recent_outages = %q, without = %q; want %q in the first only", lang, etr, body, plain, want[lang])
			}
			if n, enc := Segments(body); n > maxSegments {
				t.Errorf("%s outage (etr %v) with the apology takes %d %s segments, at most %d: %q", lang, etr, n, enc, maxSegments, body)
			}
		}
	}
}
