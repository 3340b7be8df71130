package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// testCA writes a CA certificate to dir and returns it with a server
// certificate for 127.0.0.1 that it signed.
func testCA(t *testing.T, dir string) (caFile string, server tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gridbell test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
}

// MQTT over TLS with a username and password, against a mochi broker that
// requires both.
func TestMQTTTLSAndPassword(t *testing.T) {
	caFile, cert := testCA(t, t.TempDir())
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{
		Auth: auth.AuthRules{{Username: "gridbell", Password: "s3cret", Allow: true}}}}); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	cfg := testMQTTConfig("ssl://" + l.Address())
	cfg.Username, cfg.Password = "gridbell", "s3cret"
	cfg.TLS = TLSConfig{Enabled: true, CAFile: caFile}
	h := newRecorder()
	run := startMQTT(t, cfg, h, nil, nil)
	defer run.stop(t)
	ts := time.Now().UTC().Format(time.RFC3339)
	if err := srv.Publish(cfg.TopicPrefix+"/C1/M1/reading", []byte(`{"meter":"M1","ts":"`+ts+`","kwh":1}`), false, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a reading over TLS", func() bool { return h.distinct() == 1 })

	// A wrong password never subscribes.
	bad := cfg
	bad.Password, bad.ClientID = "wrong", cfg.ClientID+"-bad"
	m := NewMQTT(bad, Limits{}, h, nil, nil, nil, testLog(t))
	badRun := goRun(m.Run)
	time.Sleep(time.Second)
	if m.Ready() {
		t.Error("subscribed with a wrong password")
	}
	badRun.stop(t)
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := (TLSConfig{Enabled: true, CAFile: filepath.Join(dir, "missing.pem")}).build(); err == nil {
		t.Error("a missing CA file is not an error")
	}
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o644)
	if _, err := (TLSConfig{Enabled: true, CAFile: filepath.Join(dir, "junk.pem")}).build(); err == nil {
		t.Error("a CA file without PEM is not an error")
	}
	if c, err := (TLSConfig{}).build(); c != nil || err != nil {
		t.Errorf("TLS off = %v, %v; want nil, nil", c, err)
	}
}

// Kafka with SASL PLAIN and SCRAM-SHA-256, against a kfake cluster that
// requires it.
func TestKafkaSASL(t *testing.T) {
	for _, mech := range []string{"plain", "scram-sha-256"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "oms.outages", "billing.accounts"),
				kfake.EnableSASL(), kfake.Superuser("PLAIN", "gridbell", "s3cret"),
				kfake.Superuser("SCRAM-SHA-256", "gridbell", "s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
				kgo.SASL(plain.Auth{User: "gridbell", Pass: "s3cret"}.AsMechanism()))
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.ProduceSync(context.Background(), billingRecord("A1", 1), outageRecord("OMS-1", 1)).FirstErr(); err != nil {
				t.Fatal(err)
			}
			cl.Close()

			cfg := KafkaConfig{Brokers: c.ListenAddrs(), Group: "gridbell"}
			cfg.SASL.Mechanism, cfg.SASL.Username, cfg.SASL.Password = mech, "gridbell", "s3cret"
			h := newRecorder()
			k := NewKafka(cfg, Limits{}, h, nil, testLog(t))
			defer goRun(k.Run).stop(t)
			waitFor(t, 20*time.Second, fmt.Sprintf("2 events over %s", mech), func() bool { return h.distinct() == 2 })
			if !k.Ready() {
				t.Error("not Ready")
			}
		})
	}
}
