package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/gridbell/gridbell/internal/config"
)

// docFiles are the texts a user reads: the README and docs/, relative to
// this package.
func docFiles(t *testing.T) map[string]string {
	t.Helper()
	names, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, "../../README.md", "../../deploy/README.md")
	docs := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		docs[strings.TrimPrefix(n, "../../")] = string(b)
	}
	if len(docs) < 8 {
		t.Fatalf("only %d documents found: %v", len(docs), names)
	}
	return docs
}

// codeSpans are the `…` spans of a Markdown text.
var codeSpan = regexp.MustCompile("`([^`\n]+)`")

// TestDocsCommands: every `gridbell …` a document names is a command of the
// binary with the flags written beside it, and every command is in the
// command tables of the README and docs/interfaces.md §7.
func TestDocsCommands(t *testing.T) {
	docs := docFiles(t)
	checked := 0
	for file, text := range docs {
		for _, m := range codeSpan.FindAllStringSubmatch(text, -1) {
			words := strings.Fields(strings.ReplaceAll(m[1], `\|`, "|"))
			if i := slices.Index(words, "gridbell"); i >= 0 && (i == 0 || words[i-1] == "|") {
				checkCommand(t, file, words[i+1:])
				checked++
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d commands named in the documents", checked)
	}
	tables := map[string]string{"README.md": docs["README.md"], "docs/interfaces.md": section(docs["docs/interfaces.md"], "## 7.")}
	for _, c := range leafCommands(rootCmd()) {
		for file, text := range tables {
			if !tableRow(text, c) {
				t.Errorf("%s: the command table has no row for `%s`", file, c)
			}
		}
	}
}

// tableRow: a row of text's table starts with command, or with its parent
// and names the command's last word too ("| `gridbell deadletter list` /
// `replay [ID…]` |").
func tableRow(text, command string) bool {
	parent := command[:strings.LastIndex(command, " ")]
	last := command[len(parent)+1:]
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "| `"+command) {
			return true
		}
		if strings.HasPrefix(line, "| `"+parent+" ") {
			cell, _, _ := strings.Cut(line[2:], " | ")
			if strings.Contains(cell, "`"+last) || strings.Contains(cell, "`"+parent+" "+last) {
				return true
			}
		}
	}
	return false
}

// checkCommand: args (after "gridbell") find a command, and each --flag
// given is one of its flags.
func checkCommand(t *testing.T, file string, args []string) {
	t.Helper()
	var path []string
	for _, a := range args {
		if !regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(a) {
			break
		}
		path = append(path, a)
	}
	cmd, rest, err := rootCmd().Find(path)
	name := "gridbell " + strings.Join(path, " ")
	if err != nil || (len(rest) > 0 && !cmd.Runnable()) || (len(rest) > 0 && cmd.HasSubCommands()) {
		t.Errorf("%s names `%s`, which is no command (%v)", file, name, err)
		return
	}
	for _, a := range args {
		f, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		f, _, _ = strings.Cut(f, "=")
		f = strings.TrimRight(f, ",;.)]|")
		if cmd.Flags().Lookup(f) == nil && cmd.InheritedFlags().Lookup(f) == nil && f != "help" {
			t.Errorf("%s names `%s --%s`, which has no such flag", file, cmd.CommandPath(), f)
		}
	}
}

// leafCommands are the runnable commands users are told of, as
// "gridbell a b".
func leafCommands(root *cobra.Command) []string {
	var out []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			if s.Hidden || s.Name() == "help" || s.Name() == "completion" {
				continue
			}
			if s.HasSubCommands() {
				walk(s)
			} else {
				out = append(out, s.CommandPath())
			}
		}
	}
	walk(root)
	return out
}

// section is text from the heading that starts with h to the next heading
// of its level.
func section(text, h string) string {
	i := strings.Index(text, "\n"+h)
	if i < 0 {
		return ""
	}
	rest := text[i+1:]
	if j := strings.Index(rest[1:], "\n## "); j >= 0 {
		return rest[:j+1]
	}
	return rest
}

// configKeys are the dotted paths of the configuration: sections, keys and
// the fields of list entries (auth.tokens[].name).
func configKeys() map[string]bool {
	keys := map[string]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
			walk(t.Elem(), path+"[]")
			return
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "-" || !f.IsExported() {
				continue
			}
			if tag == "" && strings.Contains(opts, "inline") {
				walk(f.Type, path)
				continue
			}
			if tag == "" {
				continue
			}
			key := strings.TrimPrefix(path+"."+tag, ".")
			keys[key] = true
			walk(f.Type, key)
		}
	}
	walk(reflect.TypeFor[config.Config](), "")
	return keys
}

// docKey is a code span that looks like a key path: a top-level section, a
// dot, and more.
var docKey = regexp.MustCompile(`^([a-z_]+)((?:\[\])?\.[a-z0-9_.*{},\[\]]+)$`)

// TestDocsConfigKeys: every key path a document names (`sms.twilio.rate`,
// `mqtt.tls.*`, `kafka.sasl.{mechanism,username}`) and every GRIDBELL_*
// variable is one gridbell reads, and every row of docs/config.md's table
// names keys.
func TestDocsConfigKeys(t *testing.T) {
	keys := configKeys()
	top := map[string]bool{}
	for k := range keys {
		top[strings.SplitN(strings.SplitN(k, ".", 2)[0], "[", 2)[0]] = true
	}
	env := map[string]bool{}
	for _, k := range config.EnvKeys() {
		env[k] = true
	}
	// Names the documents give as examples of what gridbell refuses or ignores.
	notKeys := map[string]bool{"GRIDBELL_RULES_MOMENTRY": true, "GRIDBELL_BIN": true}
	// Go names written like key paths.
	goNames := map[string]bool{"rules.meter": true}
	envVar := regexp.MustCompile(`GRIDBELL_[A-Z0-9_]*[A-Z0-9]`)
	checked := 0
	for file, text := range docFiles(t) {
		for _, m := range codeSpan.FindAllStringSubmatch(text, -1) {
			span := strings.TrimSpace(m[1])
			if k := docKey.FindStringSubmatch(span); k != nil && top[k[1]] && !isFileName(span) && !goNames[span] {
				for _, key := range expandKey(span) {
					checked++
					if !knownKey(keys, key) {
						t.Errorf("%s names the config key `%s`, which gridbell does not read", file, key)
					}
				}
			}
		}
		for _, v := range envVar.FindAllString(text, -1) {
			if !env[v] && !notKeys[v] && !strings.HasPrefix(v, "GRIDBELL_TEST") {
				t.Errorf("%s names %s, which gridbell does not read", file, v)
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d key paths named in the documents", checked)
	}
	raw, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	inTable := false
	for i, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(line, "| key |"):
			inTable = true
		case inTable && strings.HasPrefix(line, "| --- "):
		case inTable && strings.HasPrefix(line, "| `"):
		case inTable && line == "" && i > 0:
			inTable = false
		case inTable:
			t.Errorf("docs/config.md line %d breaks the key table: %q", i+1, line)
		}
	}
}

// isFileName tells a file name (`store.go`, `deploy.md`) from a key path.
func isFileName(s string) bool {
	switch filepath.Ext(s) {
	case ".go", ".md", ".yaml", ".yml", ".json", ".jsonl", ".db", ".csv", ".txt", ".service":
		return true
	}
	return false
}

// expandKey turns `a.{b,c}` into a.b and a.c, and drops a trailing `.*`.
func expandKey(s string) []string {
	s = strings.TrimSuffix(s, ".*")
	i, j := strings.Index(s, "{"), strings.Index(s, "}")
	if i < 0 || j < i {
		return []string{s}
	}
	var out []string
	for _, alt := range strings.Split(s[i+1:j], ",") {
		out = append(out, expandKey(s[:i]+strings.TrimSpace(alt)+s[j+1:])...)
	}
	return out
}

// knownKey: key is a path of the configuration; a key under a map or a
// list of strings (`store.dsn`) counts when its parent is one.
func knownKey(keys map[string]bool, key string) bool {
	return keys[key] || keys[strings.TrimSuffix(key, "[]")]
}

// TestDocsRoutes: every /api/v1/… path a document names is described in
// internal/httpapi/openapi.yaml (which TestOpenAPIMatchesRoutes holds to
// the server's routes), with the method written before it.
func TestDocsRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../internal/httpapi/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	route := regexp.MustCompile(`(?:\b(GET|POST|PUT|PATCH|DELETE) )?(/api/v1/[A-Za-z0-9_{}./:-]*[A-Za-z0-9_}])`)
	checked := 0
	for file, text := range docFiles(t) {
		for _, m := range route.FindAllStringSubmatch(text, -1) {
			checked++
			ops, ok := findPath(spec.Paths, m[2])
			if !ok {
				t.Errorf("%s names %s, which openapi.yaml does not describe", file, m[2])
			} else if _, has := ops[strings.ToLower(m[1])]; m[1] != "" && !has {
				t.Errorf("%s names %s %s, which openapi.yaml does not describe", file, m[1], m[2])
			}
		}
	}
	if checked < 30 {
		t.Errorf("only %d routes named in the documents", checked)
	}
}

// findPath matches a documented path to one of the spec's, a segment in
// braces matching any segment; a path given up to a prefix
// (/api/v1/outages/…) matches the spec's first path under it.
func findPath(paths map[string]map[string]any, doc string) (map[string]any, bool) {
	want := strings.Split(strings.TrimRight(doc, "/."), "/")
	for p, ops := range paths {
		got := strings.Split(p, "/")
		if len(got) != len(want) {
			continue
		}
		same := true
		for i := range got {
			if got[i] != want[i] && !strings.HasPrefix(got[i], "{") && !strings.HasPrefix(want[i], "{") && !strings.HasPrefix(want[i], ":") {
				same = false
				break
			}
		}
		if same {
			return ops, true
		}
	}
	return nil, false
}

// TestDocsMetrics: every gridbell_* series a document, the alert rules or
// the dashboard name is a family docs/metrics.md lists (which
// internal/app's TestMetrics holds to what gridbell exposes).
func TestDocsMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(gridbell_[a-z0-9_]+)` \\| ([a-z]+) \\|").FindAllStringSubmatch(string(raw), -1) {
		listed[m[1]] = m[2]
	}
	texts := docFiles(t)
	for _, f := range []string{"deploy/prometheus/alerts.yaml", "deploy/grafana/gridbell.json"} {
		b, err := os.ReadFile("../../" + f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f] = string(b)
	}
	// Families the release notes of docs/metrics.md say were renamed or removed.
	retired := map[string]bool{"gridbell_contacts_valid_list_rate": true, "gridbell_rules_decision_lag_max_seconds": true}
	name := regexp.MustCompile(`\bgridbell_[a-z0-9_]*[a-z0-9]\b`)
	checked := 0
	for file, text := range texts {
		for _, n := range name.FindAllString(text, -1) {
			checked++
			if !metricListed(listed, n) && !(retired[n] && file == "docs/metrics.md") {
				t.Errorf("%s names %s, which docs/metrics.md does not list", file, n)
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d metric names found", checked)
	}
}

// metricListed: n is a listed family, or one of a histogram's series.
func metricListed(listed map[string]string, n string) bool {
	if _, ok := listed[n]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(n, suffix); ok && (listed[base] == "histogram" || listed[base] == "summary") {
			return true
		}
	}
	return false
}
