package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("rules:\n  momentary: 90s\n"), 0o600)
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("mqtt:\n  brokers: [tcp://x:1883\n"), 0o600)
	badValue := filepath.Join(dir, "bad-value.yaml")
	os.WriteFile(badValue, []byte("quiet_hours:\n  start: \"25:00\"\n"), 0o600)

	if out, err := execute(t, "run", "--check-config", "--config", good); err != nil || !strings.Contains(out, "config ok") {
		t.Errorf("good config: %q, %v", out, err)
	}
	// Valid for CONTRACT §8, but this release cannot run it: said at once.
	cluster := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(cluster, []byte("cluster:\n  enabled: true\nstore:\n  driver: postgres\n  dsn: postgres://db/g\nkafka:\n  brokers: [k1:9092]\n"), 0o600)
	for file, want := range map[string]string{broken: "cannot parse config", badValue: "25:00",
		cluster: "distributed mode is not available in this release"} {
		_, err := execute(t, "run", "--check-config", "--config", file)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run --check-config --config %s = %v, want an error naming %q", filepath.Base(file), err, want)
		}
	}
}

func TestContactsCheck(t *testing.T) {
	f := filepath.Join(t.TempDir(), "contacts.csv")
	os.WriteFile(f, []byte("户号,表号,台区,网格,手机\n0100000001,330000000001,TA-1,G01,138 1234 5678\n0100000002,330000000002,TA-1,G01,无\n"), 0o600)
	out, err := execute(t, "contacts", "check", "--format", "csv", f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "G01") || !strings.Contains(out, "0.5") {
		t.Errorf("contacts check report lacks grid G01 with a 0.5 valid-list rate:\n%s", out)
	}
}
