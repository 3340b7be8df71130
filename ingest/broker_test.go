package ingest

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
)

// TestBrokerKeepsSessionsAcrossRestart: QoS 1 messages the embedded broker
// accepted for gridbell's persistent session while gridbell was away are
// delivered after the broker (that is, gridbell) restarts.
func TestBrokerKeepsSessionsAcrossRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "broker.db")
	start := func(listen string) *Broker {
		b, err := StartBroker(listen, state, BrokerAuth{}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start("127.0.0.1:0")
	addr := b.Addr()

	var mu sync.Mutex
	got := map[string]bool{}
	subscriber := func() paho.Client {
		opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("gridbell-restart").
			SetCleanSession(false).SetOrderMatters(false).
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
				mu.Lock()
				got[string(m.Payload())] = true
				mu.Unlock()
			})
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("cannot connect subscriber: %v", tok.Error())
		}
		return c
	}
	sub := subscriber()
	if tok := sub.Subscribe("ami/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	sub.Disconnect(100)

	pub := publisher(t, "tcp://"+addr)
	for i := range 5 {
		publish(t, pub, "ami/C-1/readings", fmt.Sprintf("m%d", i))
	}
	pub.Disconnect(100)
	b.Close()

	b = start(addr)
	defer b.Close()
	sub = subscriber()
	defer sub.Disconnect(100)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 5 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the session got %d of 5 queued messages: %v", n, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrokerCloseIsQuiet: closing the broker while clients (one with a
// persistent session, one publishing) are still connected logs no warning
// or error: a clean stop is not a fault.
func TestBrokerCloseIsQuiet(t *testing.T) {
	for i := range 10 {
		var logs lockedBuffer
		b, err := StartBroker("127.0.0.1:0", filepath.Join(t.TempDir(), "broker.db"), BrokerAuth{}, zerolog.New(&logs).Level(zerolog.WarnLevel))
		if err != nil {
			t.Fatal(err)
		}
		opts := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID(fmt.Sprintf("persistent-%d", i)).
			SetCleanSession(false).SetAutoReconnect(false)
		sub := paho.NewClient(opts)
		if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("cannot connect subscriber: %v", tok.Error())
		}
		if tok := sub.Subscribe("ami/#", 1, func(paho.Client, paho.Message) {}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		pub := publisher(t, "tcp://"+b.Addr())
		for j := range 20 {
			pub.Publish("ami/C-1/readings", 1, false, fmt.Sprintf("m%d", j))
		}
		b.Close()
		time.Sleep(20 * time.Millisecond) // mochi's client goroutines end after Close returns
		if s := logs.String(); s != "" {
			t.Fatalf("closing the broker with clients connected logged:\n%s", s)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
