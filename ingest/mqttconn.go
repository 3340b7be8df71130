package ingest

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// paho reads each packet straight from the connection: the first byte,
// the length a byte at a time, then the rest, so three or four read
// syscalls a message. It writes each packet on its own too: a PUBACK is a
// 4-byte write, and a TCP segment the broker wakes up for. One reading per
// message made these syscalls most of gridbell's and much of Mosquitto's
// CPU. mqttConn reads through a buffer and writes what paho hands it from
// a goroutine of its own, so the PUBACKs of a batch of messages leave
// together in one write.

// bufferedSchemes are the broker URL schemes mqttConn opens; paho opens
// the others (websockets, unix sockets) itself.
var bufferedSchemes = map[string]bool{"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true, "mqtt+ssl": true, "tcps": true}

// useBufferedConn reports whether every broker can be opened by
// openBuffered: a known scheme, and no proxy from the environment (which
// paho's own dialer honours).
func useBufferedConn(brokers []string) bool {
	if os.Getenv("all_proxy") != "" || os.Getenv("ALL_PROXY") != "" {
		return false
	}
	for _, b := range brokers {
		u, err := url.Parse(b)
		if err != nil || !bufferedSchemes[u.Scheme] {
			return false
		}
	}
	return true
}

// openBuffered dials uri as paho does for its scheme and wraps the
// connection in an mqttConn (a paho.OpenConnectionFunc).
func openBuffered(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: 30 * time.Second}
	}
	var c net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		c, err = d.Dial("tcp", uri.Host)
	default:
		c, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
	}
	if err != nil {
		return nil, err
	}
	return newMQTTConn(c), nil
}

// mqttConn is a net.Conn with buffered reads and coalesced writes. Write
// queues the bytes and returns; a writer goroutine sends whatever queued
// while it was busy in one write. An error of that write is returned by
// the next Write (paho then drops the connection); Close sends what is
// queued first.
type mqttConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	wake    *sync.Cond
	pending []byte // queued, not yet handed to the writer
	err     error  // the writer's last error
	closed  bool
	done    chan struct{} // closed when the writer has ended
}

func newMQTTConn(c net.Conn) *mqttConn {
	m := &mqttConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10), done: make(chan struct{})}
	m.wake = sync.NewCond(&m.mu)
	go m.writer()
	return m
}

func (m *mqttConn) Read(p []byte) (int, error) { return m.r.Read(p) }

func (m *mqttConn) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	if m.closed {
		return 0, net.ErrClosed
	}
	m.pending = append(m.pending, p...)
	m.wake.Signal()
	return len(p), nil
}

// writer sends what Write queued until Close, swapping two buffers: Write
// fills one while the other is on the wire.
func (m *mqttConn) writer() {
	defer close(m.done)
	var out []byte
	m.mu.Lock()
	for {
		for len(m.pending) == 0 && !m.closed {
			m.wake.Wait()
		}
		if len(m.pending) == 0 { // closed, all sent
			m.mu.Unlock()
			return
		}
		out, m.pending = m.pending, out[:0]
		m.mu.Unlock()
		_, err := m.Conn.Write(out)
		m.mu.Lock()
		if err != nil && m.err == nil {
			m.err = err
		}
		if m.err != nil {
			m.pending = m.pending[:0]
			m.closed = true
		}
	}
}

// Close sends what is queued (within a second) and closes the connection.
func (m *mqttConn) Close() error {
	m.mu.Lock()
	m.closed = true
	m.wake.Signal()
	m.mu.Unlock()
	m.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	<-m.done
	return m.Conn.Close()
}
