package notify

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

//go:embed templates
var builtinTemplates embed.FS

// Languages the built-in templates cover; zh is the default.
var languages = []string{"zh", "en"}

// tplOutageRestored is the consolidated "was off from X to Y and is back".
const tplOutageRestored = "outage_restored"

// maxSegments is the most a template may need with typical values.
const maxSegments = 2

// DefaultMaxSegments is the most segments a rendered body may take unless
// sms.max_segments says otherwise; a longer one is cut (see Render).
const DefaultMaxSegments = 3

// Templates renders message bodies per language and template name.
type Templates struct {
	sets map[string]map[string]*template.Template // lang → name → template
	loc  *time.Location
	// now tells "this year" for dates, which carry the year otherwise.
	now func() time.Time
	// maxSegs caps a rendered body; see SetLimits.
	maxSegs int
}

// SetLimits sets the clock that tells this year from another in dates, and
// the most segments a body may take (0 = DefaultMaxSegments). Call it
// before the first Render.
func (t *Templates) SetLimits(now func() time.Time, maxSegments int) {
	if now != nil {
		t.now = now
	}
	t.maxSegs = maxSegments
	if t.maxSegs <= 0 {
		t.maxSegs = DefaultMaxSegments
	}
}

// templateNames lists every template: each kind plus the consolidation.
func templateNames() []string {
	names := []string{tplOutageRestored}
	for _, k := range event.Kinds {
		names = append(names, string(k))
	}
	return names
}

// LoadTemplates reads the built-in templates, each overridden by
// dir/<lang>/<name>.txt when dir is set and that file exists, and checks
// that each renders typical values in at most two segments.
func LoadTemplates(dir string, loc *time.Location) (*Templates, error) {
	t := &Templates{sets: map[string]map[string]*template.Template{}, loc: loc, maxSegs: DefaultMaxSegments}
	for _, lang := range languages {
		t.sets[lang] = map[string]*template.Template{}
		for _, name := range templateNames() {
			src, err := readTemplate(dir, lang, name)
			if err != nil {
				return nil, err
			}
			tpl, err := template.New(name).Option("missingkey=zero").Funcs(t.funcs(lang)).Parse(src)
			if err != nil {
				return nil, fmt.Errorf("cannot parse template %s/%s: %w", lang, name, err)
			}
			t.sets[lang][name] = tpl
		}
	}
	// Typical values are checked as of their own date, whatever the year.
	t.now = func() time.Time { return typicalNow }
	if err := t.validate(); err != nil {
		return nil, err
	}
	t.now = time.Now
	return t, nil
}

func readTemplate(dir, lang, name string) (string, error) {
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, lang, name+".txt"))
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("cannot read template %s/%s: %w", lang, name, err)
		}
	}
	b, err := builtinTemplates.ReadFile("templates/" + lang + "/" + name + ".txt")
	if err != nil {
		return "", fmt.Errorf("cannot read built-in template %s/%s: %w", lang, name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// funcs gives templates "time", which prints an RFC 3339 value in the
// local zone ("11月26日09:02", "Nov 26 09:02"), with the year when it is not
// this year ("2027年1月5日09:00", "Jan 5 2027 09:00"), and anything else as
// is; "later", which prints the second of two times, without its date when
// it falls on the first's day ("12:00"); and "date", which prints a day
// (2026-11-20, or an RFC 3339 time) as "11月20日" / "Nov 20", the year
// again only when it is not this year. One date style per language.
func (t *Templates) funcs(lang string) template.FuncMap {
	layout, withYear, day, dayYear := "1月2日15:04", "2006年1月2日15:04", "1月2日", "2006年1月2日"
	if lang == "en" {
		layout, withYear, day, dayYear = "Jan 2 15:04", "Jan 2 2006 15:04", "Jan 2", "Jan 2 2006"
	}
	format := func(v time.Time, layout, withYear string) string {
		if v.Year() != t.now().In(t.loc).Year() {
			return v.Format(withYear)
		}
		return v.Format(layout)
	}
	local := func(s string) (time.Time, bool) {
		v, err := time.Parse(time.RFC3339, s)
		return v.In(t.loc), err == nil
	}
	fmtTime := func(s string) string {
		v, ok := local(s)
		if !ok {
			return s
		}
		return format(v, layout, withYear)
	}
	return template.FuncMap{
		"time": fmtTime,
		"later": func(first, s string) string {
			a, okA := local(first)
			b, okB := local(s)
			if okA && okB && a.YearDay() == b.YearDay() && a.Year() == b.Year() {
				return b.Format("15:04")
			}
			return fmtTime(s)
		},
		"date": func(s string) string {
			v, ok := local(s)
			if !ok {
				d, err := time.ParseInLocation(time.DateOnly, s, t.loc)
				if err != nil {
					return s
				}
				v = d
			}
			return format(v, day, dayYear)
		},
	}
}

// Render renders template name in lang (zh when lang is unknown) with data.
// The OMS cause is told only as one of the known phrases of lang (see
// CausePhrase).
// A body over the segment cap is shortened (see fit).
func (t *Templates) Render(lang, name string, data map[string]string) (string, error) {
	set, ok := t.sets[lang]
	if !ok {
		lang, set = "zh", t.sets["zh"]
	}
	tpl, ok := set[name]
	if !ok {
		return "", fmt.Errorf("no template %q", name)
	}
	if c, ok := data["cause"]; ok {
		data = maps.Clone(data)
		data["cause"], _ = CausePhrase(lang, c, name == "planned_notice")
	}
	exec := func(data map[string]string) (string, error) {
		var b bytes.Buffer
		if err := tpl.Execute(&b, data); err != nil {
			return "", fmt.Errorf("cannot render template %s/%s: %w", lang, name, err)
		}
		return strings.TrimSpace(b.String()), nil
	}
	body, err := exec(data)
	if err != nil {
		return "", err
	}
	return t.fit(body, data, exec)
}

// shortenable are the variables of free text, in the order fit shortens
// them: what the sender wrote (cause), lists of names (critical, summary,
// areas; life-support customers last) and of accounts.
var shortenable = []string{"cause", "other_critical", "critical", "summary", "areas", "life_support", "accounts"}

// fit keeps body within the segment cap. It shortens the free-text
// variables first, halving each until the body fits (a value shortened ends
// in an ellipsis; one too short to halve is left out; a list of accounts
// keeps its first), so the hotline and the times stay. Only a template that
// is too long by itself is cut at the end.
func (t *Templates) fit(body string, data map[string]string, exec func(map[string]string) (string, error)) (string, error) {
	if n, _ := Segments(body); n <= t.maxSegs {
		return body, nil
	}
	data = maps.Clone(data)
	for _, k := range shortenable {
		for data[k] != "" {
			data[k] = shorten(k, data[k], data["account"], ellipsis(body))
			var err error
			if body, err = exec(data); err != nil {
				return "", err
			}
			if n, _ := Segments(body); n <= t.maxSegs {
				return body, nil
			}
			if k == "accounts" {
				break // down to the first account
			}
		}
	}
	return cutToSegments(body, t.maxSegs), nil
}

// shorten halves value v of variable k, or leaves it out when short; a
// list of accounts becomes its first account.
func shorten(k, v, first, ell string) string {
	if k == "accounts" {
		return first + ell
	}
	r := []rune(strings.TrimSuffix(strings.TrimSuffix(v, "…"), "..."))
	if len(r) < 8 {
		return ""
	}
	return strings.TrimSpace(string(r[:len(r)/2])) + ell
}

// ellipsis is "…" in a UCS-2 body and "..." in a GSM-7 one, which "…" would
// turn into UCS-2 and so halve what a segment holds.
func ellipsis(body string) string {
	if _, enc := Segments(body); enc == UCS2 {
		return "…"
	}
	return "..."
}

// cutToSegments cuts body at a character boundary so that, with a closing
// ellipsis, it takes at most n segments: the longest such prefix, found by
// bisection.
func cutToSegments(body string, n int) string {
	r, ell := []rune(body), ellipsis(body)
	fits := func(k int) bool { m, _ := Segments(string(r[:k]) + ell); return m <= n }
	lo, hi := 0, len(r) // fits(lo) holds; fits(hi) does not
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return string(r[:lo]) + ell
}

// typicalVars are the values a template must fit in two segments with.
func typicalVars(lang string) map[string]string {
	accounts, critical := "****2345、****6789", "市第一人民医院、星河化工、王某某"
	lifeSupport, otherCritical := "王某某", "市第一人民医院、星河化工"
	if lang == "en" {
		accounts, critical = "****2345, ****6789", "City No.1 Hospital, Xinghe Chemicals, Wang"
		lifeSupport, otherCritical = "Wang", "City No.1 Hospital, Xinghe Chemicals"
	}
	return map[string]string{
		"accounts": accounts, "account": "****2345", "hotline": "95598", "grid": "G01", "manager": "王经理",
		"area": "TA-0101", "start": "2026-11-26T09:02:00+08:00", "etr": "2026-11-26T12:00:00+08:00",
		"end": "2026-11-26T11:40:00+08:00", "cause": "tree contact", "balance": "18.50", "threshold": "30.00",
		"amount": "236.40", "due": "2026-11-20", "disconnect_at": "2026-11-27T10:00:00+08:00", "reminder": "true",
		"outages": "OMS-20261126-0042", "count": "120", "critical_count": "3", "critical": critical,
		"areas": "TA-0101", "life_support_count": "1", "life_support": lifeSupport,
		"other_critical_count": "2", "other_critical": otherCritical,
	}
}

// typicalNow is the day typicalVars are of.
var typicalNow = time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)

func (t *Templates) validate() error {
	for _, lang := range languages {
		for _, name := range templateNames() {
			body, err := t.Render(lang, name, typicalVars(lang))
			if err != nil {
				return err
			}
			if n, enc := Segments(body); n > maxSegments {
				return fmt.Errorf("template %s/%s needs %d %s segments with typical values, at most %d allowed",
					lang, name, n, enc, maxSegments)
			}
		}
	}
	return nil
}
