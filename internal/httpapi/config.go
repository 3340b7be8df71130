package httpapi

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"time"

	"github.com/gridbell/gridbell/internal/secret"
)

// Config is the http section (docs/interfaces.md §7).
type Config struct {
	Listen   string `yaml:"listen"`
	TimeZone string `yaml:"timezone"` // how the web page shows times; default Asia/Shanghai

	// Limits on slow and idle clients (limits.go).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // a request's headers
	ReadTimeout       time.Duration `yaml:"read_timeout"`        // a whole request, body included
	ImportReadTimeout time.Duration `yaml:"import_read_timeout"` // POST /api/v1/contacts/import, once its token is checked
	WriteTimeout      time.Duration `yaml:"write_timeout"`       // from the end of the headers to the end of the answer
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // a kept-alive connection between requests
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	// TrustedProxies are the addresses (IPs or CIDRs) of reverse proxies
	// whose X-Forwarded-* and Forwarded headers are believed; anyone
	// else's are removed before a handler sees them.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Roles a token or user may have (docs/interfaces.md §6). Hotline is the 95598
// call centre and its IVR: the customer lookup, nothing else.
const (
	RoleAdmin      = "admin"
	RoleDispatcher = "dispatcher"
	RoleManager    = "manager"
	RoleIngest     = "ingest"
	RoleHotline    = "hotline"
)

// MinTokenLength is the shortest token accepted: a short token can be guessed.
const MinTokenLength = 16

// MinTokenBits is the least entropy a token may have, estimated from its
// characters' frequencies (tokenBits): a long token of few characters
// (aaaaaaaaaaaaaaaa, abababababababab) is as weak as a short one. 16
// random base64 characters make about 60.
const MinTokenBits = 48

// tokenBits estimates a token's entropy: its length times the Shannon
// entropy of its characters' frequencies.
func tokenBits(tok string) float64 {
	n := map[rune]int{}
	total := 0
	for _, r := range tok {
		n[r]++
		total++
	}
	h := 0.0
	for _, c := range n {
		p := float64(c) / float64(total)
		h -= p * math.Log2(p)
	}
	return h * float64(total)
}

// Token is one API token, for machines, and what it may do.
type Token struct {
	Name  string        `yaml:"name"` // who holds it, as the audit log names it; default <role>-token-<n>
	Token secret.String `yaml:"token"`
	Role  string        `yaml:"role"`
	Grids []string      `yaml:"grids"` // managers only: the grids they may see
	PII   bool          `yaml:"pii"`   // may see phone numbers in full
}

// User is one person who logs in to the web page.
type User struct {
	Name         string        `yaml:"name"`
	PasswordHash secret.String `yaml:"password_hash"` // from `gridbell auth hash-password`; never a plain password
	Role         string        `yaml:"role"`          // admin, dispatcher, manager or hotline
	Grids        []string      `yaml:"grids"`         // managers only
	PII          bool          `yaml:"pii"`           // may see phone numbers in full (each view is audited)
}

// AuthConfig is the auth section (docs/interfaces.md §6, §7).
type AuthConfig struct {
	Tokens     []Token       `yaml:"tokens"`
	Users      []User        `yaml:"users"`
	SessionTTL time.Duration `yaml:"session_ttl"` // a login lasts this long; default 12h
}

// Defaults fills zero values.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	c.limitDefaults()
	if c.TimeZone == "" {
		c.TimeZone = "Asia/Shanghai"
	}
}

// Defaults names unnamed tokens and sets the session lifetime.
func (a *AuthConfig) Defaults() {
	for i := range a.Tokens {
		if a.Tokens[i].Name == "" {
			a.Tokens[i].Name = fmt.Sprintf("%s-token-%d", a.Tokens[i].Role, i+1)
		}
	}
	if a.SessionTTL == 0 {
		a.SessionTTL = 12 * time.Hour
	}
}

// open reports whether no one is configured: the API is then open, which
// Validate allows only on a loopback listener.
func (a AuthConfig) open() bool { return len(a.Tokens) == 0 && len(a.Users) == 0 }

// Validate checks the listen address and that a non-loopback listener has
// tokens or users: the API is open only on loopback.
func Validate(c Config, a AuthConfig) error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %q is not host:port: %w", c.Listen, err)
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if c.TimeZone != "" {
		if _, err := time.LoadLocation(c.TimeZone); err != nil {
			return fmt.Errorf("http.timezone %q: %w", c.TimeZone, err)
		}
	}
	if err := validateAuth(a); err != nil {
		return err
	}
	if a.open() && !Loopback(host) {
		return fmt.Errorf("http.listen %q is not a loopback address and auth.tokens and auth.users are empty: refusing to serve an open API", c.Listen)
	}
	return nil
}

func validateAuth(a AuthConfig) error {
	names := map[string]string{}
	seen := map[string]int{}
	for i, t := range a.Tokens {
		where := fmt.Sprintf("auth.tokens[%d]", i)
		if len(t.Token.Reveal()) < MinTokenLength {
			return fmt.Errorf("%s: token is shorter than %d characters", where, MinTokenLength)
		}
		if bits := tokenBits(t.Token.Reveal()); bits < MinTokenBits {
			return fmt.Errorf("%s: token is too easy to guess (about %.0f bits, want %d; use e.g. openssl rand -base64 24)", where, bits, MinTokenBits)
		}
		if j, dup := seen[t.Token.Reveal()]; dup {
			return fmt.Errorf("%s: same token as auth.tokens[%d]", where, j)
		}
		seen[t.Token.Reveal()] = i
		if err := checkRole(where, t.Role, t.Grids, RoleAdmin, RoleDispatcher, RoleManager, RoleIngest, RoleHotline); err != nil {
			return err
		}
		if err := uniqueName(names, where, t.Name); err != nil {
			return err
		}
	}
	for i, u := range a.Users {
		where := fmt.Sprintf("auth.users[%d]", i)
		if u.Name == "" {
			return fmt.Errorf("%s: name is empty", where)
		}
		if err := checkHash(u.PasswordHash.Reveal()); err != nil {
			return fmt.Errorf("%s (%s): password_hash: %w", where, u.Name, err)
		}
		if err := checkRole(where, u.Role, u.Grids, RoleAdmin, RoleDispatcher, RoleManager, RoleHotline); err != nil {
			return err
		}
		if err := uniqueName(names, where, u.Name); err != nil {
			return err
		}
	}
	if a.SessionTTL < 0 {
		return errors.New("auth.session_ttl must not be negative")
	}
	return nil
}

func checkRole(where, role string, grids []string, allowed ...string) error {
	if !slices.Contains(allowed, role) {
		return fmt.Errorf("%s: role %q is not one of %v", where, role, allowed)
	}
	if role == RoleManager && len(grids) == 0 {
		return fmt.Errorf("%s: a manager needs grids", where)
	}
	if role != RoleManager && len(grids) > 0 {
		// A hotline agent given grids would still see every grid.
		return fmt.Errorf("%s: grids are for managers; role %s sees every grid", where, role)
	}
	return nil
}

func uniqueName(names map[string]string, where, name string) error {
	if name == "" {
		return nil
	}
	if other, dup := names[name]; dup {
		return fmt.Errorf("%s: name %q is also %s's", where, name, other)
	}
	names[name] = where
	return nil
}

// Loopback reports whether host is a loopback name or address.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
