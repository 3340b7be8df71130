package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// errWriteFenced: a request's send deadline (the end of its claim's usable
// lease) passed before its bytes were written.
var errWriteFenced = errors.New("the send's deadline passed before the request was written")

// fencedConn is a provider connection whose writes stop at the deadline of
// the request using it. The deadline is checked against the clock right
// before each write, not by a runtime timer: a process frozen (SIGSTOP, a
// paused VM) between its claim check and the write finds, on waking, that
// the deadline has passed and writes nothing, even before the runtime's
// timers have run. The window left is the few instructions between the
// check and the system call, not the connection pool's hand-off to its
// writer goroutine.
type fencedConn struct {
	net.Conn
	until atomic.Pointer[time.Time] // nil: no deadline
}

func (c *fencedConn) Write(b []byte) (int, error) {
	if u := c.until.Load(); u != nil && !time.Now().Before(*u) {
		c.Conn.Close() // a request cut short is never whole at the provider
		return 0, errWriteFenced
	}
	return c.Conn.Write(b)
}

// fenceWrites makes tr dial fencedConns and keeps each connection to one
// request at a time (HTTP/1.1): a deadline belongs to a request, and HTTP/2
// would share a connection among several.
func fenceWrites(tr *http.Transport) {
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &fencedConn{Conn: c}, nil
	}
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
}

// fenceConn gives c, the connection a request got, that request's deadline
// (ctx's), or none.
func fenceConn(c net.Conn, ctx context.Context) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	fc, ok := c.(*fencedConn)
	if !ok {
		return
	}
	if d, ok := ctx.Deadline(); ok {
		fc.until.Store(&d)
	} else {
		fc.until.Store(nil)
	}
}
