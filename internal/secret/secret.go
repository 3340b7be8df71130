// Package secret holds configuration values that must never be printed:
// tokens and passwords print as *** in logs, errors and dumps.
package secret

// String is a secret string. Use Reveal to read it.
type String string

// String implements fmt.Stringer and prints ***.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// GoString prints *** for %#v.
func (s String) GoString() string { return s.String() }

// MarshalText keeps secrets out of JSON and YAML dumps.
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret value.
func (s String) Reveal() string { return string(s) }
