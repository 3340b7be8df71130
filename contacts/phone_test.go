package contacts

import (
	"strings"
	"testing"
)

// render writes contacts as "verdict +86…" or "verdict: reason", joined by " | ".
func render(cs []Contact) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		if c.Phone != "" {
			parts[i] = string(c.Verdict) + " " + c.Phone
		} else {
			parts[i] = string(c.Verdict) + ": " + c.Reason
		}
	}
	return strings.Join(parts, " | ")
}

func TestClean(t *testing.T) {
	seen := map[string]bool{}
	f := func(in, want string) {
		t.Helper()
		if seen[in] {
			t.Fatalf("duplicate case %q", in)
		}
		seen[in] = true
		if got := render(Clean(in)); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
	// Clean as typed.
	f("13812345678", "valid +8613812345678")
	f("+8613812345678", "valid +8613812345678")
	f("19912345678", "valid +8619912345678")
	f("+16502530000", "valid +16502530000")
	// Junk around one number.
	f("138 1234 5678", "fixed +8613812345678")
	f("138-1234-5678", "fixed +8613812345678")
	f("138.1234.5678", "fixed +8613812345678")
	f("(138)12345678", "fixed +8613812345678")
	f(" 13812345678 ", "fixed +8613812345678")
	f("13812345678\t", "fixed +8613812345678")
	f("'13812345678", "fixed +8613812345678")
	f("\"13812345678\"", "fixed +8613812345678")
	f("13812345678.0", "fixed +8613812345678")
	f("1.38123E+10", "invalid: too short")
	f("013812345678", "fixed +8613812345678")
	f("+86 (0)138 1234 5678", "fixed +8613812345678")
	f("+86 (0)755 8888 1234", "landline +8675588881234")
	f("手机：13812345678", "fixed +8613812345678")
	f("13812345678（本人）", "fixed +8613812345678")
	f("tel:13812345678", "fixed +8613812345678")
	f("1 3 8 1 2 3 4 5 6 7 8", "fixed +8613812345678")
	f("138　1234　5678", "fixed +8613812345678") // ideographic spaces
	f("\u00a013812345678", "fixed +8613812345678")
	// Full-width digits.
	f("１３８１２３４５６７８", "fixed +8613812345678")
	f("１３８-１２３４-５６７８", "fixed +8613812345678")
	f("＋８６１３８１２３４５６７８", "fixed +8613812345678")
	// Country prefixes.
	f("+86 138 1234 5678", "fixed +8613812345678")
	f("+86-13812345678", "fixed +8613812345678")
	f("+86 (138) 1234-5678", "fixed +8613812345678")
	f("0086 13812345678", "fixed +8613812345678")
	f("008613812345678", "fixed +8613812345678")
	f("8613812345678", "fixed +8613812345678")
	f("86-138-1234-5678", "fixed +8613812345678")
	f("(+86)13812345678", "fixed +8613812345678")
	// Several numbers in one field.
	f("13812345678/13987654321", "fixed +8613812345678 | fixed +8613987654321")
	f("13812345678,13987654321", "fixed +8613812345678 | fixed +8613987654321")
	f("13812345678；13987654321", "fixed +8613812345678 | fixed +8613987654321")
	f("13812345678、13987654321", "fixed +8613812345678 | fixed +8613987654321")
	f("13812345678 13987654321", "fixed +8613812345678 | fixed +8613987654321")
	f("138 1234 5678 / 139 8765 4321", "fixed +8613812345678 | fixed +8613987654321")
	f("1381234567813987654321", "fixed +8613812345678 | fixed +8613987654321")
	f("13812345678/13812345678", "fixed +8613812345678")
	f("13812345678/无", "fixed +8613812345678")
	f("13812345678/0", "fixed +8613812345678 | invalid: placeholder")
	f("0755-88881234/13812345678", "landline +8675588881234 | fixed +8613812345678")
	f("13812345678,", "fixed +8613812345678")
	f("138-1234-5678 (父亲) 139-8765-4321 (母亲)", "fixed +8613812345678 | fixed +8613987654321")
	f("13812345678或13987654321", "fixed +8613812345678 | fixed +8613987654321")
	f("13812345678 / 0", "fixed +8613812345678 | invalid: placeholder")
	// Landlines.
	f("0755-88881234", "landline +8675588881234")
	f("0755-88881234转8001", "landline +8675588881234")
	f("0755-88881234 分机 8001", "landline +8675588881234")
	f("010-12345678 ext. 12", "landline +861012345678")
	f("0755-88881234转8001/13812345678", "landline +8675588881234 | fixed +8613812345678")
	f("010-12345678", "landline +861012345678")
	f("(021)62345678", "landline +862162345678")
	f("0571 8765432", "landline +865718765432")
	f("+86 10 1234 5678", "landline +861012345678")
	f("+86 0755 8888 1234", "landline +8675588881234")
	f("+861012345678", "landline +861012345678")
	f("4008123123", "landline +864008123123")
	f("88881234", "invalid: landline without area code")
	f("8888123", "invalid: landline without area code")
	// Placeholders and junk.
	f("", "missing: empty")
	f("   ", "missing: empty")
	f("无", "invalid: placeholder")
	f("暂无", "invalid: placeholder")
	f("-", "invalid: placeholder")
	f("NULL", "invalid: placeholder")
	f("0", "invalid: placeholder")
	f("00000000000", "invalid: placeholder")
	f("11111111111", "invalid: placeholder")
	f("13800000000", "invalid: placeholder")
	f("13999999999", "invalid: placeholder")
	f("13800138000", "invalid: placeholder")
	// Wrong lengths and prefixes.
	f("1381234567", "invalid: too short")
	f("138123456789", "invalid: too long")
	f("12345678901", "invalid: not a chinese mobile or landline")
	f("10086", "invalid: too short")
	f("123", "invalid: too short")
	f("23456789012", "invalid: not a chinese mobile or landline")
	f("0755-888", "invalid: too short")
	f("1381234567890123456789012345", "invalid: too long")
	// Foreign numbers.
	f("+1 650-253-0000", "fixed +16502530000")
	f("001 650 253 0000", "fixed +16502530000")
	f("+44 7911 123456", "fixed +447911123456")
	f("+852 9123 4567", "fixed +85291234567")
	f("+1 123", "invalid: too short")
	f("+999 1234567", "invalid: invalid foreign number")
	f("+44 20 7946 0018", "landline +442079460018")
	if len(seen) < 60 {
		t.Fatalf("only %d cases, want at least 60", len(seen))
	}
}

// TestCleanIdempotent checks that cleaning a cleaned number gives it back.
func TestCleanIdempotent(t *testing.T) {
	for _, in := range []string{"138 1234 5678", "0755-88881234", "+44 7911 123456", "+86 10 1234 5678", "4008123123"} {
		for _, c := range Clean(in) {
			checkStable(t, c)
		}
	}
}

func checkStable(t *testing.T, c Contact) {
	t.Helper()
	if c.Phone == "" {
		return
	}
	again := Clean(c.Phone)
	if len(again) != 1 || again[0].Phone != c.Phone {
		t.Fatalf("Clean(%q) = %q, want it unchanged", c.Phone, render(again))
	}
	if v := again[0].Verdict; v != Valid && v != Landline {
		t.Fatalf("Clean(%q) verdict %s, want valid or landline", c.Phone, v)
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"13812345678", "+86 138-1234-5678", "１３８１２３４５６７８", "13812345678/13987654321",
		"0755-88881234", "无", "", "+44 7911 123456", "0086 13812345678", "1381234567813987654321"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		cs := Clean(in)
		if len(cs) == 0 {
			t.Fatalf("Clean(%q) returned nothing", in)
		}
		for _, c := range cs {
			if usable(c.Verdict) != (c.Phone != "") {
				t.Fatalf("Clean(%q): verdict %s with phone %q", in, c.Verdict, c.Phone)
			}
			checkStable(t, c)
		}
	})
}
