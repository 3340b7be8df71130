package notify

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
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

// Templates renders message bodies per language and template name.
type Templates struct {
	sets map[string]map[string]*template.Template // lang → name → template
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
	t := &Templates{sets: map[string]map[string]*template.Template{}}
	for _, lang := range languages {
		t.sets[lang] = map[string]*template.Template{}
		for _, name := range templateNames() {
			src, err := readTemplate(dir, lang, name)
			if err != nil {
				return nil, err
			}
			tpl, err := template.New(name).Option("missingkey=zero").Funcs(templateFuncs(lang, loc)).Parse(src)
			if err != nil {
				return nil, fmt.Errorf("cannot parse template %s/%s: %w", lang, name, err)
			}
			t.sets[lang][name] = tpl
		}
	}
	return t, t.validate()
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

// templateFuncs gives templates "time", which prints an RFC 3339 value in
// the local zone ("11月26日09:02", "Nov 26 09:02") and anything else as is.
func templateFuncs(lang string, loc *time.Location) template.FuncMap {
	layout := "1月2日15:04"
	if lang == "en" {
		layout = "Jan 2 15:04"
	}
	return template.FuncMap{"time": func(s string) string {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return s
		}
		return t.In(loc).Format(layout)
	}}
}

// Render renders template name in lang (zh when lang is unknown) with data.
func (t *Templates) Render(lang, name string, data map[string]string) (string, error) {
	set, ok := t.sets[lang]
	if !ok {
		set = t.sets["zh"]
	}
	tpl, ok := set[name]
	if !ok {
		return "", fmt.Errorf("no template %q", name)
	}
	var b bytes.Buffer
	if err := tpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("cannot render template %s/%s: %w", lang, name, err)
	}
	return strings.TrimSpace(b.String()), nil
}

// typicalVars are the values a template must fit in two segments with.
func typicalVars(lang string) map[string]string {
	accounts, critical := "****2345、****6789", "市第一人民医院、星河化工、王某某"
	if lang == "en" {
		accounts, critical = "****2345, ****6789", "City No.1 Hospital, Xinghe Chemicals, Wang"
	}
	return map[string]string{
		"accounts": accounts, "account": "****2345", "hotline": "95598", "grid": "G01", "manager": "王经理",
		"area": "TA-0101", "start": "2026-11-26T09:02:00+08:00", "etr": "2026-11-26T12:00:00+08:00",
		"end": "2026-11-26T11:40:00+08:00", "cause": "tree contact", "balance": "18.50", "threshold": "30.00",
		"amount": "236.40", "due": "2026-11-20", "disconnect_at": "2026-11-27T10:00:00+08:00", "reminder": "true",
		"outages": "OMS-20261126-0042", "count": "120", "critical_count": "3", "critical": critical,
	}
}

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
