package notify

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestFencedConnWritesNothingPastDeadline: a connection given a request's
// deadline refuses a write once it has passed, and the peer receives
// nothing; before it, the write goes through. The deadline is read from
// the clock at the write, as after a freeze no runtime timer has fired yet.
func TestFencedConnWritesNothingPastDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		got <- b
	}()
	tr := &http.Transport{}
	fenceWrites(tr)
	c, err := tr.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
	defer cancel()
	fenceConn(c, ctx)
	if _, err := c.Write([]byte("before ")); err != nil {
		t.Fatalf("a write before the deadline: %v", err)
	}
	past := time.Now().Add(-time.Millisecond)
	c.(*fencedConn).until.Store(&past)
	if _, err := c.Write([]byte("after")); !errors.Is(err, errWriteFenced) {
		t.Fatalf("a write past the deadline: %v, want errWriteFenced", err)
	}
	select {
	case b := <-got:
		if string(b) != "before " {
			t.Fatalf("the peer received %q, want only the write before the deadline", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the fenced write did not close the connection")
	}
	fenceConn(c, context.Background())
	if c.(*fencedConn).until.Load() != nil {
		t.Fatal("a request without a deadline left the previous one's on the connection")
	}
}
