package app_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/config"
)

// TestEmbeddedBrokerOnTheNetwork runs gridbell with its embedded broker
// on every interface: the configuration needs ingest credentials, an
// anonymous power_off gets nowhere and sends nothing, and the head-end's
// credentials still work end to end.
func TestEmbeddedBrokerOnTheNetwork(t *testing.T) {
	dir := t.TempDir()
	contactsFile := filepath.Join(dir, "contacts.csv")
	if err := os.WriteFile(contactsFile, []byte(contactsCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(freePort(t))
	env := []string{
		"GRIDBELL_DATA_DIR=" + filepath.Join(dir, "data"),
		"GRIDBELL_CONTACTS_FILE=" + contactsFile,
		"GRIDBELL_HTTP_LISTEN=" + freePort(t),
		"GRIDBELL_MQTT_EMBEDDED_LISTEN=0.0.0.0:" + port,
		"GRIDBELL_RULES_MOMENTARY=1s",
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
	}
	if _, err := config.Load("", env); err == nil || !strings.Contains(err.Error(), "mqtt.embedded_auth.ingest") {
		t.Fatalf("config.Load with embedded_listen 0.0.0.0 and no credentials = %v, want an error naming mqtt.embedded_auth.ingest", err)
	}
	env = append(env, "GRIDBELL_MQTT_EMBEDDED_AUTH_INGEST=headend:headend-secret-1")
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	startApp(t, cfg, zerolog.WarnLevel)

	url := "tcp://127.0.0.1:" + port
	now := time.Now().UTC().Format(time.RFC3339)
	powerOff := func(user, pass, conc string) error {
		opts := paho.NewClientOptions().AddBroker(url).SetClientID("attacker-" + conc + user).
			SetConnectRetry(false).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		if user != "" {
			opts.SetUsername(user).SetPassword(pass)
		}
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return tok.Error()
		}
		defer c.Disconnect(100)
		tok := c.Publish("ami/"+conc+"/event", 1, false, `{"concentrator":"`+conc+`","ts":"`+now+`","type":"power_off"}`)
		tok.WaitTimeout(5 * time.Second)
		return tok.Error()
	}
	if err := powerOff("", "", "C-2"); err == nil {
		t.Error("an anonymous client published a power_off")
	}
	if err := powerOff("headend", "guess-the-password", "C-2"); err == nil {
		t.Error("a wrong password published a power_off")
	}
	if err := powerOff("headend", "headend-secret-1", "C-1"); err != nil {
		t.Fatalf("the head-end's credentials: %v", err)
	}

	// C-1's power_off (TA-1) makes outage SMS; C-2's (TA-2) made none.
	outbox := filepath.Join(cfg.DataDir, "outbox.jsonl")
	waitFor(t, "TA-1's outage SMS", 30*time.Second, func() bool { return len(count(readOutbox(t, outbox), "outage", "")) >= 3 })
	for _, l := range readOutbox(t, outbox) {
		if l.Account >= "0100000005" {
			t.Errorf("SMS to TA-2 account %s (%s): an anonymous power_off went through", l.Account, l.Kind)
		}
	}
}
