package ingest

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
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
