package notify

import (
	"strings"
	"testing"
)

// TestDigestAreaNames renders the manager digest with the areas' names
// (area_names, as the rules give it when the contacts file names areas):
// the zh digest shows "name(code)" instead of the bare code and stays
// within two segments; the en one keeps the codes, since a Chinese name
// would turn it into UCS-2 (3 segments instead of 1).
func TestDigestAreaNames(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"zh": "（幸福里小区1号台区(TA-0101)）", "en": "(areas TA-0101)"}
	for _, lang := range languages {
		vars := typicalVars(lang)
		plain, err := tpl.Render(lang, "manager_digest", vars)
		if err != nil {
			t.Fatal(err)
		}
		vars["area_names"] = "幸福里小区1号台区(TA-0101)"
		body, err := tpl.Render(lang, "manager_digest", vars)
		if err != nil {
			t.Fatal(err)
		}
		n, enc := Segments(body)
		t.Logf("%s: %d segments (%s), %d characters: %s", lang, n, enc, len([]rune(body)), body)
		if !strings.Contains(body, want[lang]) || strings.Contains(body, "台区TA-0101") || n > 2 || lang == "en" && (n != 1 || enc != GSM7) {
			t.Errorf("%s digest with area names: %d segments: %q, want it to hold %q", lang, n, body, want[lang])
		}
		if !strings.Contains(plain, "TA-0101") || strings.Contains(plain, "幸福里") {
			t.Errorf("%s digest without names: %q", lang, plain)
		}
	}
}
