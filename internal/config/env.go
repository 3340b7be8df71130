package config

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/secret"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "GRIDBELL_"

// applyEnv sets every field whose GRIDBELL_<PATH> variable is present. The
// path is the field's YAML key path in capitals joined by "_"
// (GRIDBELL_MQTT_BROKERS, GRIDBELL_RULES_MOMENTARY); lists are
// comma-separated. auth.tokens takes TOKEN:ROLE[:GRID+GRID] items, auth.users
// NAME:PASSWORD_HASH:ROLE[:GRID+GRID][:pii] items.
func applyEnv(c *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	if v, ok := env[EnvPrefix+"AUTH_TOKENS"]; ok {
		toks, err := parseTokens(v)
		if err != nil {
			return err
		}
		c.Auth.Tokens = toks
		delete(env, EnvPrefix+"AUTH_TOKENS")
	}
	if v, ok := env[EnvPrefix+"AUTH_USERS"]; ok {
		users, err := parseUsers(v)
		if err != nil {
			return err
		}
		c.Auth.Users = users
		delete(env, EnvPrefix+"AUTH_USERS")
	}
	if err := walk(reflect.ValueOf(c).Elem(), strings.TrimSuffix(EnvPrefix, "_"), env); err != nil {
		return err
	}
	warnings, err := unknownEnv(env)
	c.Warnings = append(c.Warnings, warnings...)
	return err
}

// envTestPrefix marks variables of gridbell's own test suite
// (GRIDBELL_TEST_PG), which are no configuration keys.
const envTestPrefix = EnvPrefix + "TEST_"

// unknownEnv judges the GRIDBELL_* variables walk did not use. One within a
// few letters of a real key is a misspelt override (GRIDBELL_RULES_MOMENTRY):
// silently ignored it would leave the default in force, so it is an error
// that names the key meant. Any other (a script's own GRIDBELL_BIN, say) is
// returned as a warning for the caller to log: refusing it would stop
// gridbell under tools that share the prefix.
func unknownEnv(left map[string]string) (warnings []string, err error) {
	var bad []string
	for k := range left {
		if !strings.HasPrefix(k, envTestPrefix) {
			bad = append(bad, k)
		}
	}
	slices.Sort(bad)
	known := EnvKeys()
	var misspelt []string
	for _, k := range bad {
		if near := nearest(k, known); near != "" {
			misspelt = append(misspelt, k+" (did you mean "+near+"?)")
		} else {
			warnings = append(warnings, "environment variable "+k+" names no config key: ignored")
		}
	}
	if len(misspelt) > 0 {
		return nil, fmt.Errorf("unknown environment variable %s: gridbell reads %s<KEY_PATH> for every config key and nothing else",
			strings.Join(misspelt, ", "), EnvPrefix)
	}
	return warnings, nil
}

// EnvKeys lists every environment variable gridbell reads.
func EnvKeys() []string {
	keys := []string{EnvPrefix + "AUTH_TOKENS"}
	var list func(t reflect.Type, path string)
	list = func(t reflect.Type, path string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			key := path + "_" + strings.ToUpper(tag)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				list(f.Type, key)
			} else if key != EnvPrefix+"AUTH_TOKENS" {
				keys = append(keys, key)
			}
		}
	}
	list(reflect.TypeFor[Config](), strings.TrimSuffix(EnvPrefix, "_"))
	slices.Sort(keys)
	return keys
}

// nearest returns the key of known closest to k in edit distance, if it
// is close enough to be a typo of it.
func nearest(k string, known []string) string {
	best, bestD := "", len(k)/4+2
	for _, c := range known {
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var (
	durationType  = reflect.TypeOf(time.Duration(0))
	secretType    = reflect.TypeOf(secret.String(""))
	unmarshalType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func walk(v reflect.Value, path string, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		key := path + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			if err := walk(fv, key, env); err != nil {
				return err
			}
			continue
		}
		raw, ok := env[key]
		if !ok {
			continue
		}
		delete(env, key) // what is left is unknown
		if err := set(fv, raw); err != nil {
			return fmt.Errorf("environment %s: %w", key, err)
		}
	}
	return nil
}

func set(v reflect.Value, raw string) error {
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalType) {
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(raw))
	}
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 60s or 30m", raw)
		}
		v.SetInt(int64(d))
		return nil
	case v.Type() == secretType:
		v.SetString(raw)
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", raw)
		}
		v.SetInt(n)
	case reflect.Float64, reflect.Float32:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		v.SetFloat(x)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("lists of %s cannot be set from the environment", v.Type().Elem())
		}
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		v.Set(reflect.ValueOf(items).Convert(v.Type()))
	default:
		return fmt.Errorf("unsupported kind %s", v.Kind())
	}
	return nil
}

// envItems splits the comma-separated list of variable name into its
// items' colon-separated fields, each item holding min to max fields
// (shape says which, for the error).
func envItems(name, raw string, min, max int, shape string) ([][]string, error) {
	var items [][]string
	for _, item := range strings.Split(raw, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ":")
		if len(parts) < min || len(parts) > max {
			return nil, fmt.Errorf("environment %s%s: item %d is not %s", EnvPrefix, name, len(items)+1, shape)
		}
		items = append(items, parts)
	}
	return items, nil
}

// parseTokens reads GRIDBELL_AUTH_TOKENS: TOKEN:ROLE[:GRID+GRID],...
func parseTokens(raw string) ([]httpapi.Token, error) {
	items, err := envItems("AUTH_TOKENS", raw, 2, 3, "TOKEN:ROLE[:GRID+GRID]")
	if err != nil {
		return nil, err
	}
	toks := make([]httpapi.Token, 0, len(items))
	for _, parts := range items {
		t := httpapi.Token{Token: secret.String(parts[0]), Role: parts[1]}
		if len(parts) == 3 {
			t.Grids = strings.Split(parts[2], "+")
		}
		toks = append(toks, t)
	}
	return toks, nil
}

// parseUsers reads GRIDBELL_AUTH_USERS: NAME:PASSWORD_HASH:ROLE[:GRID+GRID][:pii],...
func parseUsers(raw string) ([]httpapi.User, error) {
	items, err := envItems("AUTH_USERS", raw, 3, 5, "NAME:PASSWORD_HASH:ROLE[:GRID+GRID][:pii]")
	if err != nil {
		return nil, err
	}
	users := make([]httpapi.User, 0, len(items))
	for _, parts := range items {
		u := httpapi.User{Name: parts[0], PasswordHash: secret.String(parts[1]), Role: parts[2]}
		for _, p := range parts[3:] {
			switch {
			case p == "pii":
				u.PII = true
			case p != "":
				u.Grids = strings.Split(p, "+")
			}
		}
		users = append(users, u)
	}
	return users, nil
}
