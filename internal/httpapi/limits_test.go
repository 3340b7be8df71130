package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/secret"
)

// Short limits, so the tests see them act; the tests' own patience
// (patience) is many times longer, so a cut that comes is the server's.
var slowCfg = httpapi.Config{
	Listen:            "127.0.0.1:0",
	ReadHeaderTimeout: 300 * time.Millisecond,
	ReadTimeout:       400 * time.Millisecond,
	ImportReadTimeout: 30 * time.Second,
	WriteTimeout:      2 * time.Second,
	IdleTimeout:       300 * time.Millisecond,
}

const patience = 15 * time.Second

var slowAuth = httpapi.AuthConfig{Tokens: []httpapi.Token{{Token: secret.String("admin-token-0123456789"), Role: httpapi.RoleAdmin}}}

// serve runs a real server (net/http's limits act only on real
// connections) and returns its address.
func serve(t *testing.T, cfg httpapi.Config, auth httpapi.AuthConfig, deps httpapi.Deps) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpapi.New(cfg, auth, deps, zerolog.Nop()).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// slowDeps has an event endpoint that reads its whole body, as ingest's does.
func slowDeps(t *testing.T) httpapi.Deps {
	read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	return httpapi.Deps{OMSEvents: read, TwilioInbound: read, Contacts: registry(t), ContactsDir: t.TempDir()}
}

// dial opens a raw connection and writes what a slow client sends first.
func dial(t *testing.T, addr, first string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, first); err != nil {
		t.Fatal(err)
	}
	return c
}

// cut waits for the server to close c and returns what it answered first.
func cut(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(patience))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server held the connection for %s; it answered %q", patience, got)
	}
	return string(got)
}

func TestSlowClientsAreCut(t *testing.T) {
	addr := serve(t, slowCfg, slowAuth, slowDeps(t))
	auth := "Authorization: Bearer admin-token-0123456789\r\n"
	cases := []struct {
		name, first, want string // want: the start of the answer ("" = closed without one)
	}{
		{"headers never end", "GET /api/v1/outages HTTP/1.1\r\nHost: x\r\n", ""},
		{"headers never end, with a token", "GET /api/v1/outages HTTP/1.1\r\nHost: x\r\n" + auth, ""},
		{"body never comes, no token", "POST /api/v1/oms/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 401"},
		{"body never comes, with a token", "POST /api/v1/oms/events HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 100\r\n\r\n{", "HTTP/1.1 400"},
		{"webhook body never ends", "POST /twilio/inbound HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nBody=ST", "HTTP/1.1 400"},
		{"import body never comes, no token", "POST /api/v1/contacts/import HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\naccount,", "HTTP/1.1 401"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := cut(t, dial(t, addr, c.first))
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("answer = %.60q, want it to start %q", got, c.want)
			}
		})
	}
}

// TestRefusedBodyIsNotWaitedFor (issue 21): a request refused for its
// credentials, whose body (under 256 KiB) comes slowly or never, loses its
// connection at once, not after read_timeout: here a minute, longer than
// the test's patience.
func TestRefusedBodyIsNotWaitedFor(t *testing.T) {
	cfg := slowCfg
	cfg.ReadTimeout, cfg.WriteTimeout = time.Minute, time.Minute
	addr := serve(t, cfg, slowAuth, slowDeps(t))
	for _, first := range []string{
		"POST /api/v1/oms/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
		"POST /api/v1/oms/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token-0123456789\r\nContent-Length: 100\r\n\r\n",
		"POST /api/v1/contacts/import HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\naccount,",
	} {
		c := dial(t, addr, first)
		go func() { // trickles a byte every 100 ms until the server closes
			for {
				time.Sleep(100 * time.Millisecond)
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
		if got := cut(t, c); !strings.HasPrefix(got, "HTTP/1.1 401") {
			t.Errorf("%.40q: answer = %.60q, want 401", first, got)
		}
	}
}

func TestTrickledBodyIsCut(t *testing.T) {
	addr := serve(t, slowCfg, slowAuth, slowDeps(t))
	for _, path := range []string{"/api/v1/oms/events", "/twilio/inbound"} {
		c := dial(t, addr, "POST "+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-0123456789\r\nContent-Length: 1000\r\n\r\n")
		// One byte every 100 ms, the attack the issue saw: the server must
		// end it although bytes keep coming.
		for range int(patience / (100 * time.Millisecond)) {
			if _, err := c.Write([]byte("x")); err != nil {
				break // the server closed
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := cut(t, c); got != "" && !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("%s: answer = %.60q, want 400 or a closed connection", path, got)
		}
	}
}

func TestIdleConnectionIsClosed(t *testing.T) {
	addr := serve(t, slowCfg, slowAuth, slowDeps(t))
	c := dial(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(patience))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz = %d (close %v), want 200 kept alive", resp.StatusCode, resp.Close)
	}
	if got := cut(t, c); got != "" {
		t.Errorf("idle connection answered %q", got)
	}
}

// The contacts import alone reads for longer, and only once its token is
// checked: a file trickled over longer than read_timeout is imported.
func TestImportReadsLonger(t *testing.T) {
	addr := serve(t, slowCfg, slowAuth, slowDeps(t))
	file := "account,meter,area,grid,phone\n0100000001,330000000001,TA-1,G01,13812345601\n"
	c := dial(t, addr, fmt.Sprintf("POST /api/v1/contacts/import HTTP/1.1\r\nHost: x\r\n"+
		"Authorization: Bearer admin-token-0123456789\r\nContent-Length: %d\r\n\r\n", len(file)))
	for _, part := range strings.SplitAfter(file, ",") {
		time.Sleep(slowCfg.ReadTimeout / 4) // the whole file takes about twice read_timeout
		if _, err := io.WriteString(c, part); err != nil {
			t.Fatalf("the server cut a trickled import: %v", err)
		}
	}
	c.SetReadDeadline(time.Now().Add(patience))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the server cut a trickled import: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Errorf("import = %d %s, want 200", resp.StatusCode, b)
	}
}

// A burst of held connections, with and without a token, leaves /healthz
// answering.
func TestHeldConnectionsDoNotStarveHealthz(t *testing.T) {
	cfg := slowCfg
	cfg.ReadHeaderTimeout, cfg.ReadTimeout = 5*time.Second, 5*time.Second // held for the whole test
	addr := serve(t, cfg, slowAuth, slowDeps(t))
	held := 200
	if lim := openFileLimit(); lim > 0 && lim < 1000 {
		held = int(lim / 4)
	}
	var wg sync.WaitGroup
	for i := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := "GET /api/v1/outages HTTP/1.1\r\nHost: x\r\n"
			if i%2 == 1 {
				first = "POST /api/v1/oms/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-0123456789\r\nContent-Length: 100\r\n\r\n{"
			}
			dial(t, addr, first)
		}()
	}
	wg.Wait()
	cl := &http.Client{Timeout: patience}
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz with %d held connections: %v", held, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz with %d held connections = %d", held, resp.StatusCode)
	}
}

// openFileLimit reads the soft limit on open files (0 when unknown).
func openFileLimit() uint64 {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(line, "Max open files") {
			var n uint64
			fmt.Sscan(f[3], &n)
			return n
		}
	}
	return 0
}
