package notify

import (
	"strings"
	"testing"
)

// TestBuiltinTemplates renders every built-in template in both languages
// with typical values and checks what each must say.
func TestBuiltinTemplates(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{ // name → zh, en fragments
		"outage":            {"TA-0101于11月26日09:02停电", "Expected back by Nov 26 12:00"},
		"etr_update":        {"调整为11月26日12:00", "now expected back by Nov 26 12:00"},
		"restored":          {"已于11月26日11:40恢复供电", "since Nov 26 11:40"},
		"outage_restored":   {"于11月26日09:02至11月26日11:40停电，现已恢复供电", "from Nov 26 09:02 to Nov 26 11:40 and is back"},
		"planned_notice":    {"温馨提醒", "Reminder: planned work"},
		"arrears":           {"欠电费236.40元，缴费截止2026-11-20", "CNY 236.40 is overdue (due 2026-11-20)"},
		"disconnect_notice": {"11月27日10:00起暂停", "from Nov 27 10:00"},
		"balance_low":       {"余额为18.50元，已低于30.00元", "CNY 18.50, below CNY 30.00"},
		"balance_exhausted": {"余额已用完", "used up"},
		"manager_digest":    {"重要/高危3户：市第一人民医院", "3 critical: City No.1 Hospital"},
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

// TestTemplatesWithoutArea: the rules leave area out when they do not know it.
func TestTemplatesWithoutArea(t *testing.T) {
	tpl, err := LoadTemplates("", shanghai)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"outage", "etr_update", "restored", "outage_restored", "planned_notice"} {
		for _, lang := range languages {
			vars := typicalVars(lang)
			delete(vars, "area")
			body, _ := tpl.Render(lang, name, vars)
			if strings.Contains(body, "  ") || strings.Contains(body, " in (") || (lang == "zh" && !strings.Contains(body, "您所在区域")) {
				t.Errorf("%s/%s without area: %q", lang, name, body)
			}
		}
	}
}
