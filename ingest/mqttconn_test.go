package ingest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// mqttConnPair returns the two ends of a loopback TCP connection, the
// near one wrapped in an mqttConn.
func mqttConnPair(t *testing.T) (*mqttConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	far := <-accepted
	if far == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { far.Close() })
	return newMQTTConn(c), far
}

// Every byte written reaches the peer in order, what was queued at Close
// included, and reads see what the peer sent.
func TestMQTTConnWritesAllInOrder(t *testing.T) {
	c, far := mqttConnPair(t)
	var want bytes.Buffer
	for i := range 5000 {
		p := []byte{0x40, 0x02, byte(i >> 8), byte(i)} // a PUBACK
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(far)
		got <- b
	}()
	if _, err := far.Write([]byte("connack")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "connack" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the peer got %d bytes, want the %d written, in order", len(b), want.Len())
	}
	if _, err := c.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// A connection that failed says so at the next Write, so paho drops it.
func TestMQTTConnReportsWriteError(t *testing.T) {
	c, far := mqttConnPair(t)
	c.Conn.Close() // the socket goes away under the writer
	far.Close()
	var err error
	// The writer reports the failure of an earlier write.
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		_, err = c.Write([]byte{0x40, 0x02, 0, 1})
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a closed connection keep succeeding")
	}
	c.Close()
}
