package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// explainYAML rewrites an error of yaml.v3 decoding src into Config for
// people: the right line, the key path instead of Go type names, what was
// expected, and never the characters of a value under a secret key.
func explainYAML(src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return syntaxError(err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(src, &root) // it parsed, or there would be no TypeError
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		msgs = append(msgs, explainTypeError(&root, e))
	}
	return errors.New(strings.Join(msgs, "; "))
}

var (
	yamlLine     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
	badValue     = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `.*`)? into (.+)$")
)

// syntaxError fixes yaml.v3's line for parser errors, which it counts from
// 0 (scanner errors it counts from 1).
func syntaxError(err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	line, _ := strconv.Atoi(m[1])
	if parserProblem(m[2]) {
		line++
	}
	return fmt.Errorf("line %d: %s", line, m[2])
}

// parserProblem reports whether msg is one of yaml.v3's parser (not
// scanner) problems.
func parserProblem(msg string) bool {
	for _, p := range []string{"did not find expected <document start>", "did not find expected node content",
		"did not find expected key", "did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"did not find expected '-' indicator", "found undefined tag handle", "found duplicate %YAML directive",
		"found incompatible YAML document", "found duplicate %TAG directive", "block sequence entries are not allowed"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// explainTypeError rewrites one line of a yaml.TypeError.
func explainTypeError(root *yaml.Node, e string) string {
	if m := unknownField.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		path := pathAt(root, line)
		parent := strings.Join(path[:max(len(path)-1, 0)], ".")
		msg := fmt.Sprintf("line %d: unknown key %s", line, m[2])
		if parent != "" {
			msg = fmt.Sprintf("line %d: unknown key %s under %s", line, m[2], parent)
		}
		if near := nearestKey(path, m[2]); near != "" {
			msg += " (did you mean " + near + "?)"
		}
		return msg
	}
	if m := badValue.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		path := pathAt(root, line)
		key := strings.Join(path, ".")
		t := fieldType(path)
		got := map[string]string{"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
			"seq": "a list", "map": "a mapping", "null": "empty", "timestamp": "a time"}[m[2]]
		if got == "" {
			got = "a " + m[2]
		}
		if v := scalarAt(root, line); v != "" && m[2] != "seq" && m[2] != "map" && !secretPath(path, t) {
			got = strconv.Quote(v)
		}
		return fmt.Sprintf("line %d: %s: %s is not %s", line, key, got, expected(t, m[3]))
	}
	return e
}

// expected says in words what a field of type t takes; goType is yaml's
// name for it, used when t is unknown.
func expected(t reflect.Type, goType string) string {
	if t == nil {
		if strings.Contains(goType, "Duration") {
			return "a duration like 60s or 30m"
		}
		return "of the right kind"
	}
	switch {
	case t == durationType:
		return "a duration like 60s or 30m"
	case t == secretType:
		return "text"
	}
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping of keys"
	}
	return "of the right kind"
}

// secretPath reports whether a value at path must not be quoted: a secret,
// or anything under a key that holds them.
func secretPath(path []string, t reflect.Type) bool {
	if t == secretType {
		return true
	}
	for _, p := range path {
		for _, w := range []string{"token", "password", "secret", "dsn", "key", "auth"} {
			if strings.Contains(p, w) {
				return true
			}
		}
	}
	return t == nil
}

// fieldType is the type of the Config field at path (nil when unknown).
func fieldType(path []string) reflect.Type {
	t := reflect.TypeFor[Config]()
	for _, p := range path {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if _, err := strconv.Atoi(p); err == nil {
			continue // a list index
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTag(t, p)
		if !ok {
			return nil
		}
		t = f.Type
	}
	return t
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// nearestKey suggests the key meant by an unknown key at path.
func nearestKey(path []string, unknown string) string {
	t := fieldType(path[:max(len(path)-1, 0)])
	for t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return nearest(unknown, keys)
}

// pathAt returns the key path of the deepest node on line (1-based), list
// items as their index.
func pathAt(n *yaml.Node, line int) []string {
	var best []string
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(append([]string(nil), path...), k.Value)
				if k.Line == line || v.Line == line {
					best = p
				}
				if v.Line == line && v.Kind != yaml.ScalarNode && v.Style&yaml.FlowStyle != 0 {
					continue // {…} or […] on this line: the error is about it as a whole
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := append(append([]string(nil), path...), strconv.Itoa(i))
				if c.Line == line && c.Kind == yaml.ScalarNode {
					best = path // a list item: name the list
				}
				walk(c, p)
			}
		}
	}
	walk(n, nil)
	return best
}

// scalarAt returns the scalar value on line, if there is one.
func scalarAt(n *yaml.Node, line int) string {
	if n.Kind == yaml.ScalarNode && n.Line == line {
		return n.Value
	}
	if n.Kind == yaml.MappingNode {
		for i := 1; i < len(n.Content); i += 2 {
			if v := scalarAt(n.Content[i], line); v != "" {
				return v
			}
		}
		return ""
	}
	for _, c := range n.Content {
		if v := scalarAt(c, line); v != "" {
			return v
		}
	}
	return ""
}
