package httpapi

import (
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/gridbell/gridbell/internal/secret"
)

// Config is the http section (CONTRACT §7).
type Config struct {
	Listen string `yaml:"listen"`

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

// Roles a token may have (CONTRACT §6).
const (
	RoleAdmin      = "admin"
	RoleDispatcher = "dispatcher"
	RoleManager    = "manager"
	RoleIngest     = "ingest"
)

// Token is one API token and what it may do.
type Token struct {
	Token secret.String `yaml:"token"`
	Role  string        `yaml:"role"`
	Grids []string      `yaml:"grids"` // managers only: the grids they may see
}

// AuthConfig is the auth section (CONTRACT §6, §7).
type AuthConfig struct {
	Tokens []Token `yaml:"tokens"`
}

// Defaults fills zero values.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	c.limitDefaults()
}

// Validate checks the listen address and that a non-loopback listener has
// tokens: the API is open only on loopback.
func Validate(c Config, a AuthConfig) error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %q is not host:port: %w", c.Listen, err)
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	for i, t := range a.Tokens {
		if t.Token == "" {
			return fmt.Errorf("auth.tokens[%d]: token is empty", i)
		}
		if !slices.Contains([]string{RoleAdmin, RoleDispatcher, RoleManager, RoleIngest}, t.Role) {
			return fmt.Errorf("auth.tokens[%d]: role %q is not admin, dispatcher, manager or ingest", i, t.Role)
		}
		if t.Role == RoleManager && len(t.Grids) == 0 {
			return fmt.Errorf("auth.tokens[%d]: a manager token needs grids", i)
		}
	}
	if len(a.Tokens) == 0 && !Loopback(host) {
		return fmt.Errorf("http.listen %q is not a loopback address and auth.tokens is empty: refusing to serve an open API", c.Listen)
	}
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
