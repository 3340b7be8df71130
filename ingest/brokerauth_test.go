package ingest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridbell/gridbell/internal/secret"
)

// authedBroker starts the embedded broker as gridbell does with ingest
// credentials: configured for every interface (0.0.0.0), so that
// anonymous access would be an attack, not a convenience. It returns the
// config gridbell's own client uses and a loopback URL of the broker.
func authedBroker(t *testing.T) (MQTTConfig, string) {
	t.Helper()
	cfg := MQTTConfig{EmbeddedListen: "0.0.0.0:0", TopicPrefix: fmt.Sprintf("gbauth%x/ami", rand.Uint64()), MaxInflight: 4,
		EmbeddedAuth: EmbeddedAuth{Ingest: Credentials{{Username: "headend", Password: "headend-secret-1"}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	auth, own, err := EmbeddedBrokerAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if own.Username == "" || len(own.Password.Reveal()) < minBrokerPassword {
		t.Fatalf("gridbell's own client has no credentials: %q", own.Username)
	}
	b, err := StartBroker(cfg.EmbeddedListen, "", auth, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	_, port, _ := net.SplitHostPort(b.Addr())
	url := "tcp://127.0.0.1:" + port
	own.Brokers = []string{url}
	return own, url
}

// connect returns a connected client or the connection error.
func connect(url, user, pass string, will string) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("gbauth-%x", rand.Uint64())).
		SetConnectTimeout(5 * time.Second).SetConnectRetry(false).SetAutoReconnect(false)
	if user != "" {
		opts.SetUsername(user).SetPassword(pass)
	}
	if will != "" {
		opts.SetWill(will, `{"type":"power_off"}`, 1, false)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	return c, nil
}

// TestEmbeddedBrokerRefusesStrangers: with credentials set, an anonymous
// client or a wrong password cannot connect (so cannot read meter traffic
// or publish a power_off); the ingest credentials may publish under the
// prefix and nothing else; gridbell's own client may only subscribe.
func TestEmbeddedBrokerRefusesStrangers(t *testing.T) {
	own, url := authedBroker(t)
	p := own.TopicPrefix
	h := newRecorder()
	run := startMQTT(t, own, h, nil, nil)
	defer run.stop(t)

	for _, c := range []struct{ user, pass, will string }{
		{"", "", ""},                        // anonymous
		{"headend", "wrong-password-1", ""}, // wrong password
		{"gridbell", "", ""},                // a username alone
		{own.Username, own.Password.Reveal(), p + "/C1/event"}, // a will it may not publish
	} {
		if cl, err := connect(url, c.user, c.pass, c.will); err == nil {
			cl.Disconnect(50)
			t.Errorf("connect as %q (will %q) succeeded, want it refused", c.user, c.will)
		}
	}

	ingest, err := connect(url, "headend", "headend-secret-1", "")
	if err != nil {
		t.Fatalf("ingest credentials refused: %v", err)
	}
	defer ingest.Disconnect(50)
	tok := ingest.Subscribe(p+"/#", 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if st := tok.(*paho.SubscribeToken).Result(); st[p+"/#"] != 0x80 {
		t.Errorf("ingest client subscribed to %s (result %v): it could read every meter", p+"/#", st)
	}

	// gridbell's own credentials cannot publish a power_off.
	self, err := connect(url, own.Username, own.Password.Reveal(), "")
	if err != nil {
		t.Fatalf("gridbell's own credentials refused: %v", err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	self.Publish(p+"/C9/event", 1, false, `{"concentrator":"C9","ts":"`+now+`","type":"power_off"}`).WaitTimeout(2 * time.Second)
	self.Disconnect(50)

	publish(t, ingest, p+"/C1/event", `{"concentrator":"C1","ts":"`+now+`","type":"power_off"}`)
	waitFor(t, 10*time.Second, "the ingest client's event", func() bool { return h.total() >= 1 })
	for _, e := range h.events() {
		if e.Concentrator == nil || e.Concentrator.Concentrator != "C1" {
			t.Errorf("handed %+v; only the ingest client's C1 power_off may arrive", e)
		}
	}
	// Outside the prefix the ingest client may not publish either: the
	// broker drops it from a v3.1.1 client by disconnecting it.
	ingest.Publish("elsewhere/x", 1, false, "x").WaitTimeout(2 * time.Second)
	waitFor(t, 5*time.Second, "the ingest client cut off", func() bool { return !ingest.IsConnectionOpen() })
}

// TestEmbeddedListenNeedsAuth: a non-loopback embedded_listen without
// ingest credentials is a configuration error; short or repeated
// credentials are too.
func TestEmbeddedListenNeedsAuth(t *testing.T) {
	good := Credentials{{Username: "headend", Password: "headend-secret-1"}}
	f := func(listen string, brokers []string, ingest Credentials, user, pass, want string) {
		t.Helper()
		c := MQTTConfig{EmbeddedListen: listen, Brokers: brokers, Username: user, Password: secret.String(pass),
			EmbeddedAuth: EmbeddedAuth{Ingest: ingest}}
		c.Defaults()
		err := c.Validate()
		switch {
		case want == "" && err != nil:
			t.Errorf("Validate(%s, %v) = %v, want nil", listen, ingest, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("Validate(%s, %v) = %v, want an error with %q", listen, ingest, err, want)
		case err != nil && strings.Contains(err.Error(), "secret-1"):
			t.Errorf("error shows a password: %v", err)
		}
	}
	f("127.0.0.1:1884", nil, nil, "", "", "")
	f("localhost:1884", nil, nil, "", "", "")
	f("[::1]:1884", nil, nil, "", "", "")
	f("0.0.0.0:1884", nil, nil, "", "", "not a loopback address")
	f(":1884", nil, nil, "", "", "not a loopback address")
	f("10.1.2.3:1884", nil, nil, "", "", "not a loopback address")
	f("0.0.0.0:1884", []string{"tcp://mq:1883"}, nil, "", "", "") // embedded broker not used
	f("0.0.0.0:1884", nil, good, "", "", "")
	f("0.0.0.0:1884", nil, Credentials{{Username: "headend", Password: "short"}}, "", "", "shorter than 12")
	f("0.0.0.0:1884", nil, Credentials{{Password: "headend-secret-1"}}, "", "", "no username")
	f("0.0.0.0:1884", nil, append(good, good[0]), "", "", "listed twice")
	f("0.0.0.0:1884", nil, good, "headend", "gridbell-secret-1", "listed twice")
	f("0.0.0.0:1884", nil, good, "gridbell", "short", "mqtt.password")

	var cs Credentials
	if err := cs.UnmarshalText([]byte("a:pass-one-long, b:pass:with:colons")); err != nil || len(cs) != 2 ||
		cs[0].Username != "a" || cs[1].Password.Reveal() != "pass:with:colons" {
		t.Errorf("UnmarshalText = %+v, %v", cs, err)
	}
	if err := cs.UnmarshalText([]byte("nopassword")); err == nil {
		t.Error("UnmarshalText(nopassword) = nil, want an error")
	}
}
