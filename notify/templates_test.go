package notify

import (
	"cmp"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBuiltinTemplates renders every built-in template in both languages
// with typical values and checks what each must say.
func TestBuiltinTemplates(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{ // name → zh, en fragments
		"outage":            {"您处11月26日09:02因树木碰触线路停电，预计12:00恢复，逾时仍无电请回复停电", "since Nov 26 09:02, caused by a tree touching a power line"},
		"etr_update":        {"调整为11月26日12:00", "now expected back by Nov 26 12:00"},
		"restored":          {"已于11月26日11:40恢复供电。如仍无电请回复停电", "since Nov 26 11:40"},
		"outage_restored":   {"于11月26日09:02至11:40停电，现已恢复供电。如仍无电请回复停电", "from Nov 26 09:02 to 11:40 and is back"},
		"planned_notice":    {"温馨提醒：户号****2345、****6789：因树木碰触线路，您所在区域计划于", "Reminder: power will be off at your address from Nov 26 09:02 to 12:00"},
		"arrears":           {"欠电费236.40元，缴费截止11月20日", "CNY 236.40 is overdue (due Nov 20)"},
		"disconnect_notice": {"11月27日10:00起暂停", "from Nov 27 10:00"},
		"balance_low":       {"余额为18.50元，已低于30.00元", "CNY 18.50, below CNY 30.00"},
		"balance_exhausted": {"余额已用完", "used up"},
		"manager_digest":    {"G01网格自11月26日09:02起120户停电（台区TA-0101），其中生命支持1户：王某某，另有重要/高危2户：市第一人民医院", "120 of your customers out since Nov 26 09:02 (areas TA-0101); 1 on life support: Wang; 2 other critical: City No.1 Hospital"},
	}
	for _, name := range templateNames() {
		for i, lang := range languages {
			body, err := tpl.Render(lang, name, typicalVars(lang))
			if err != nil {
				t.Fatal(err)
			}
			n, enc := Segments(body)
			t.Logf("%s/%s (%d %s): %s", lang, name, n, enc, body)
			if !strings.Contains(body, want[name][i]) {
				t.Errorf("%s/%s = %q, want it to contain %q", lang, name, body, want[name][i])
			}
			if name != "manager_digest" && !strings.Contains(body, "95598") {
				t.Errorf("%s/%s has no hotline", lang, name)
			}
		}
	}
}

// residentTemplates are the templates customers read.
var residentTemplates = []string{"outage", "etr_update", "restored", "outage_restored", "planned_notice"}

// TestTemplatesNoInternalCodes: the rules pass the internal area code, and
// no template residents read shows it (they would not know "TA-0001"); the
// OMS cause comes as a phrase in the reader's language.
func TestTemplatesNoInternalCodes(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range residentTemplates {
		for _, lang := range languages {
			vars := typicalVars(lang)
			vars["area"], vars["cause"] = "TA-0001", "CB-trip F12 relay 51N"
			body, _ := tpl.Render(lang, name, vars)
			if strings.Contains(body, "TA-0001") || strings.Contains(body, "  ") || strings.Contains(body, "()") || strings.Contains(body, "（）") {
				t.Errorf("%s/%s: %q", lang, name, body)
			}
			if lang == "zh" && strings.Contains(body, "CB-trip") {
				t.Errorf("zh/%s quotes the OMS's English cause: %q", name, body)
			}
		}
	}
}

func TestCausePhrase(t *testing.T) {
	f := func(lang, in string, planned bool, want string, wantKnown bool) {
		t.Helper()
		if got, known := CausePhrase(lang, in, planned); got != want || known != wantKnown {
			t.Errorf("CausePhrase(%s, %q, %v) = %q, %v, want %q, %v", lang, in, planned, got, known, want, wantKnown)
		}
	}
	f("zh", "cable fault", false, "电缆故障", true)
	f("zh", "Cable_Fault", false, "电缆故障", true)
	f("en", "cable  fault", false, "a cable fault", true)
	f("zh", "tree contact", false, "树木碰触线路", true)
	f("en", "树障", false, "a tree touching a power line", true)
	f("zh", "雷击", true, "雷击", true)
	f("en", "Planned-Maintenance", true, "planned maintenance", true)
	// Whatever else an OMS writes is told as a generic phrase.
	f("zh", "CB trip at sub 12", false, "电网故障", false)
	f("en", "CB trip at sub 12", false, "a fault on the power network", false)
	f("zh", "10kV线路跳闸", false, "电网故障", false)
	f("en", "Click http://evil.example/pay", false, "a fault on the power network", false)
	f("zh", "点击 http://evil.example/pay 缴费", false, "电网故障", false)
	f("en", "call 400-000-0000 to pay", true, "planned maintenance", false)
	f("zh", "内部施工", true, "计划检修", false)
	f("en", "12345", false, "a fault on the power network", false)
	f("zh", "", false, "", false)
	f("zh", "  ", true, "", false)
	for _, c := range causes {
		for _, lang := range languages {
			if p, known := CausePhrase(lang, c.keys[0], false); p == "" || !known {
				t.Errorf("cause %q has no %s phrase", c.keys[0], lang)
			}
		}
	}
}

// TestNoFeedTextInSMS (issue 21): a cause an OMS sends with a link or
// words of its own reaches no resident's SMS; the SMS tells a known
// phrase instead.
func TestNoFeedTextInSMS(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	for _, cause := range []string{"Click http://evil.example/pay to restore power", "请点击 evil.example 缴费恢复供电", "www.evil.example"} {
		for _, name := range residentTemplates {
			for _, lang := range languages {
				vars := typicalVars(lang)
				vars["cause"] = cause
				body, err := tpl.Render(lang, name, vars)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(body, "evil") || strings.Contains(body, "http") || strings.Contains(body, "点击") {
					t.Errorf("%s/%s with cause %q: %q", lang, name, cause, body)
				}
			}
		}
	}
}

// TestDatesCarryTheYear: a date of another year says which.
func TestDatesCarryTheYear(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	tpl.SetLimits(func() time.Time { return time.Date(2026, 12, 30, 12, 0, 0, 0, shanghai) }, 0)
	f := func(lang, etr, want string) {
		t.Helper()
		vars := typicalVars(lang)
		vars["etr"] = etr
		body, _ := tpl.Render(lang, "etr_update", vars)
		if !strings.Contains(body, want) {
			t.Errorf("%s etr %s: %q, want %q in it", lang, etr, body, want)
		}
	}
	f("zh", "2026-12-31T08:00:00+08:00", "调整为12月31日08:00")
	f("zh", "2027-01-01T08:00:00+08:00", "调整为2027年1月1日08:00")
	f("zh", "9999-12-31T23:00:00+08:00", "调整为9999年12月31日23:00")
	f("en", "2027-01-01T08:00:00+08:00", "by Jan 1 2027 08:00")
	f("en", "2026-12-31T23:59:00+08:00", "by Dec 31 23:59")
	f("zh", "2026-12-31T17:00:00Z", "2027年1月1日01:00") // the year in Shanghai, not UTC
}

// TestBodyCap: free text that would make a long SMS is shortened so the
// body fits the cap, and the hotline and times stay.
func TestBodyCap(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range languages {
		vars := typicalVars(lang)
		// A customer with many accounts: the list is what gets long now
		// that a cause is one of the known phrases.
		vars["accounts"] = strings.Repeat(vars["accounts"]+map[string]string{"zh": "、", "en": ", "}[lang], 200)
		body, err := tpl.Render(lang, "outage", vars)
		if err != nil {
			t.Fatal(err)
		}
		n, enc := Segments(body)
		t.Logf("%s (%d %s, %d characters): %s", lang, n, enc, len([]rune(body)), body)
		if n > DefaultMaxSegments || !strings.Contains(body, "95598") || !strings.Contains(body, "12:00") ||
			!strings.Contains(body, map[string]string{"zh": "…", "en": "..."}[lang]) || (lang == "en" && enc != GSM7) {
			t.Errorf("%s: %d segments: %q", lang, n, body)
		}
		vars = typicalVars(lang)
		vars["critical"] = strings.Repeat("市第一人民医院、", 400)
		vars["other_critical"] = vars["critical"]
		body, _ = tpl.Render(lang, "manager_digest", vars)
		if n, _ := Segments(body); n > DefaultMaxSegments || !strings.Contains(body, "120") {
			t.Errorf("%s digest: %d segments: %q", lang, n, body)
		}
	}
	tpl.SetLimits(nil, 1)
	body, _ := tpl.Render("zh", "planned_notice", typicalVars("zh"))
	// One segment cannot hold the template itself: the cause is left out,
	// the accounts go down to the first, and the end is cut.
	if n, _ := Segments(body); n != 1 || !strings.Contains(body, "户号****2345…：") || !strings.HasSuffix(body, "…") {
		t.Errorf("cap 1: %d segments: %q", n, body)
	}
	if got := cutToSegments(strings.Repeat("a", 1000), 2); len(got) != 2*153 || !strings.HasSuffix(got, "...") {
		t.Errorf("cutToSegments(1000 a, 2) = %d bytes %q", len(got), got)
	}
	if got := cutToSegments(strings.Repeat("停", 1000), 2); len([]rune(got)) != 2*67 || !strings.HasSuffix(got, "…") {
		t.Errorf("cutToSegments(1000 停, 2) = %d characters", len([]rune(got)))
	}
}

// TestTemplateSegments measures every built-in template in both languages
// with the facts of a typical message (one account, a known cause, an
// estimate the same day, or none): the outage and restoration messages a
// storm sends to every resident take one segment, the others at most two;
// docs/interfaces.md's segment table holds these figures.
func TestTemplateSegments(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/interfaces.md")
	if err != nil {
		t.Fatal(err)
	}
	one := map[string]bool{"outage": true, "restored": true, "outage_restored": true, "etr_update": true}
	label := map[string]string{"outage": "`outage` with an estimate", "planned_notice": "`planned_notice` (reminder)",
		"manager_digest": "`manager_digest` (3 critical customers)"}
	for _, name := range templateNames() {
		for _, etr := range []bool{true, false} {
			if !etr && name != "outage" {
				continue
			}
			row := "| " + cmp.Or(label[name], "`"+name+"`") + " |"
			if !etr {
				row = "| `outage` without one |"
			}
			for _, lang := range languages {
				vars := typicalVars(lang)
				vars["accounts"] = vars["account"]
				if !etr {
					delete(vars, "etr")
				}
				body, err := tpl.Render(lang, name, vars)
				if err != nil {
					t.Fatal(err)
				}
				n, enc := Segments(body)
				if enc == UCS2 {
					row += fmt.Sprintf(" %d (%d characters) |", n, len([]rune(body)))
				} else {
					row += fmt.Sprintf(" %d (%d septets) |", n, len(body))
				}
				if (one[name] && n != 1) || n > maxSegments {
					t.Errorf("%s/%s (etr %v) takes %d %s segments: %q", lang, name, etr, n, enc, body)
				}
			}
			if !strings.Contains(string(doc), row+"\n") {
				t.Errorf("docs/interfaces.md's segment table lacks the row %s", row)
			}
		}
	}
}

func TestTemplateDates(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	tpl.SetLimits(func() time.Time { return typicalNow }, 0)
	for lang, want := range map[string][]string{"zh": {"缴费截止11月20日", "缴费截止2027年1月5日"}, "en": {"(due Nov 20)", "(due Jan 5 2027)"}} {
		for i, due := range []string{"2026-11-20", "2027-01-05"} {
			vars := typicalVars(lang)
			vars["due"] = due
			body, _ := tpl.Render(lang, "arrears", vars)
			if !strings.Contains(body, want[i]) {
				t.Errorf("%s arrears due %s: %q, want %q", lang, due, body, want[i])
			}
		}
	}
}

// TestFollowupDigest: the follow-up list (回访) a grid's manager gets after
// a restoration is worded in the manager's language, names the first
// accounts with their interruptions, and says when more follow.
func TestFollowupDigest(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"grid": "G2", "manager": "Li", "followup": "true", "outages": "OMS-7", "count": "7",
		"critical_count": "1", "summary": "A0304(3), A0301(3)", "more": "true"}
	for _, tt := range []struct{ lang, want string }{
		{"en", "Grid G2: outage OMS-7 is restored; please call back 7 customers (1 critical): A0304(3), A0301(3) and others."},
		{"zh", "停电OMS-7已恢复，请回访7户（重要1户）：A0304(3), A0301(3)等。"},
	} {
		body, err := tpl.Render(tt.lang, "manager_digest", vars)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, tt.want) {
			t.Errorf("%s follow-up digest = %q, want it to say %q", tt.lang, body, tt.want)
		}
		if tt.lang == "en" && strings.ContainsAny(body, "停电回访户") {
			t.Errorf("the English follow-up digest holds Chinese: %q", body)
		}
	}
}
