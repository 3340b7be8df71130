package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Secrets and full phone numbers never appear in a run's output: its logs,
// /metrics, the API's error answers, and --print-config. The test runs the
// real binary, provokes every error it can reach from outside, and greps
// everything that came back.
func TestNoSecretInAnyOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gridbell")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	secrets := []string{
		"admin-SECRET-token-7f3a9c", "manager-SECRET-token-55e1b0", "twilio-SECRET-auth-9d2e41",
		"influx-SECRET-token-c0ffee", "broker-SECRET-password-1234",
		"influx-SECRET-url-pass-77", // the password in influx.url (issue 21)
	}
	phones := []string{"13812345601", "13987654302", "88886666"}
	contactsFile := filepath.Join(dir, "contacts.csv")
	os.WriteFile(contactsFile, []byte("account,name,meter,area,grid,manager,manager_phone,phone,phone2\n"+
		"0100000001,One,330000000001,TA-1,G01,Wang,13987654302,138 1234 5601,0571-88886666\n"), 0o600)
	httpAddr, brokerAddr, influxAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`data_dir: %s
contacts_file: %s
http: {listen: "%s"}
mqtt:
  embedded_listen: "%s"
  embedded_auth: {ingest: [{username: headend, password: "%s"}]}
influx: {url: "http://meters:%s@%s", bucket: meters, token: "%s", flush_every: 100ms}
sms:
  twilio: {auth_token: "%s", inbound_url: "https://sms.example/twilio/inbound"}
auth:
  tokens:
    - {name: ops, token: "%s", role: admin}
    - {name: wang, token: "%s", role: manager, grids: [G01]}
`, filepath.Join(dir, "data"), contactsFile, httpAddr, brokerAddr, secrets[4], secrets[5], influxAddr, secrets[3], secrets[2], secrets[0], secrets[1])), 0o600)

	var all bytes.Buffer
	printed, err := exec.Command(bin, "run", "--print-config", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("--print-config: %v\n%s", err, printed)
	}
	fmt.Fprintf(&all, "--print-config:\n%s\n", printed)
	// A config with a type error quotes nothing of a secret.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("auth:\n  tokens:\n    - {token: ["+secrets[0]+"], role: admin}\n"), 0o600)
	out, _ := exec.Command(bin, "run", "--check-config", "--config", bad).CombinedOutput()
	fmt.Fprintf(&all, "--check-config (bad):\n%s\n", out)

	var logs bytes.Buffer
	run := exec.Command(bin, "run", "--config", cfg)
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill()
	base := "http://" + httpAddr
	awaitReadyz(t, base)

	ask := func(method, path, token, body string, header ...string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&all, "%s -> %d %v\n%s\n", method, resp.StatusCode, resp.Header, b) // not the path: the test's own words
	}
	ask("GET", "/api/v1/outages", secrets[0]+"x", "")                  // a wrong token that is almost right
	ask("GET", "/api/v1/outages", "", "", "Authorization", secrets[1]) // no Bearer
	ask("GET", "/api/v1/outages/X", secrets[0], "")
	ask("GET", "/api/v1/outages/X/customers?grid=G02", secrets[1], "")
	ask("POST", "/api/v1/oms/events", secrets[0], `{"outage_id":13812345601}`)
	ask("POST", "/api/v1/oms/events", secrets[0], `{"outage_id":"OMS-1","kind":"fault","status":"started","areas":["TA-1"],"cause":"13812345601"`)
	ask("POST", "/api/v1/billing/events", secrets[0], `[{"account":"0100000001","type":"arrears","amount":"13812345601"}]`)
	ask("POST", "/api/v1/contacts/import", secrets[0], "account,meter,area,phone\n0100000002,330000000002,TA-1,13812345601\n")
	ask("POST", "/api/v1/contacts/import", secrets[0], "account,meter,area,grid,phone\n0100000002,330000000002,,G01,13812345601\n")
	ask("POST", "/api/v1/outages/X/confirm", secrets[0], `{"reason":13812345601}`)
	ask("POST", "/twilio/inbound", "", url.Values{"From": {"+8613812345601"}, "Body": {"STOP"}}.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	ask("POST", "/twilio/status", "", url.Values{"To": {"+8613812345601"}, "MessageStatus": {"failed"}}.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "X-Twilio-Signature", "bad")
	ask("GET", "/metrics", "", "")
	ask("GET", "/readyz", "", "")

	run.Process.Signal(syscall.SIGTERM)
	run.Wait()
	fmt.Fprintf(&all, "logs:\n%s\n", logs.String())

	text := all.String()
	for _, want := range []string{"-> 401", "-> 403", "-> 400", "gridbell_", "http api serving", "token: '***'", "http://meters:***@"} {
		if !strings.Contains(text, want) {
			t.Errorf("the run's output lacks %q: the test saw less than it should", want)
		}
	}
	for _, s := range append(secrets, phones...) {
		if i := strings.Index(text, s); i >= 0 {
			t.Errorf("%q appears in the run's output: …%s…", s, text[max(0, i-200):min(len(text), i+100)])
		}
	}
	if t.Failed() {
		os.WriteFile(filepath.Join(os.TempDir(), "gridbell-secrets-run.txt"), []byte(text), 0o600)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func awaitReadyz(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("gridbell did not become ready")
}
