package httpapi

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of the http limits. A client gets ReadHeaderTimeout to send its
// headers; a request without credentials is then refused at once and its
// connection closed (refusals.go), so it costs nothing for long. An
// authenticated request has ReadTimeout for its body, except the contacts
// import, which gets ImportReadTimeout for a file of up to 1 GiB.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultImportReadTimeout = 15 * time.Minute
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
)

// webhookReadTimeout bounds how long a Twilio webhook's body may take:
// Twilio posts a few hundred bytes at once, and whoever posts is not
// known until the signature over the body is checked.
const webhookReadTimeout = 10 * time.Second

// limitDefaults fills the zero limits.
func (c *Config) limitDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	set(&c.ReadTimeout, DefaultReadTimeout)
	set(&c.ImportReadTimeout, DefaultImportReadTimeout)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

// validateLimits refuses limits that would switch a guard off: no timeout
// is negative (zero takes the default), and the import's is no shorter
// than the others'.
func (c Config) validateLimits() error {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout}, {"read_timeout", c.ReadTimeout},
		{"import_read_timeout", c.ImportReadTimeout}, {"write_timeout", c.WriteTimeout},
		{"idle_timeout", c.IdleTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("http.%s %s is negative", d.key, d.v)
		}
	}
	if c.ImportReadTimeout > 0 && c.ImportReadTimeout < c.ReadTimeout {
		return fmt.Errorf("http.import_read_timeout %s is shorter than http.read_timeout %s", c.ImportReadTimeout, c.ReadTimeout)
	}
	if c.MaxHeaderBytes != 0 && (c.MaxHeaderBytes < 4<<10 || c.MaxHeaderBytes > 1<<20) {
		return fmt.Errorf("http.max_header_bytes %d is not between 4096 and 1048576", c.MaxHeaderBytes)
	}
	_, err := parseProxies(c.TrustedProxies)
	return err
}

// parseProxies reads http.trusted_proxies: IPs or CIDR prefixes.
func parseProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("http.trusted_proxies: %q is not an IP address or CIDR prefix", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// httpServer is the net/http server with cfg's limits.
func httpServer(cfg Config, h http.Handler, lg zerolog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          log.New(serverLog{lg}, "", 0),
	}
}

// serverLog takes net/http's own complaints (TLS handshakes, accept
// errors, panics) into the component's log at debug level.
type serverLog struct{ log zerolog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	l.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// readFor gives an authenticated handler d to read its request body
// instead of http.read_timeout, and as long again to answer.
func readFor(d, write time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		if err := rc.SetReadDeadline(now.Add(d)); err == nil {
			rc.SetWriteDeadline(now.Add(d + write))
		}
		next.ServeHTTP(w, r)
	})
}

// LiftWriteDeadline lets a streaming handler (server-sent events) write for
// as long as its client listens: it removes http.write_timeout from the
// answer w is writing. Call it after the request is authenticated; a
// middleware that wraps the ResponseWriter must have an Unwrap method for
// this to reach the connection.
func LiftWriteDeadline(w http.ResponseWriter) error {
	if err := http.NewResponseController(w).SetWriteDeadline(time.Time{}); err != nil {
		return fmt.Errorf("cannot lift the write deadline: %w", err)
	}
	return nil
}

// remoteAddr is the IP address of r's peer.
func remoteAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(host)
		return a.Unmap(), err == nil
	}
	return ap.Addr().Unmap(), true
}
