package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/store/storetest"
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
	// Distributed mode (docs/deploy.md) is checked like any other section.
	cluster := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(cluster, []byte("cluster:\n  enabled: true\nstore:\n  driver: postgres\n  dsn: postgres://db/g\nkafka:\n  brokers: [k1:9092]\n"), 0o600)
	if out, err := execute(t, "run", "--check-config", "--config", cluster); err != nil || !strings.Contains(out, "config ok") {
		t.Errorf("distributed-mode config: %q, %v", out, err)
	}
	noKafka := filepath.Join(dir, "no-kafka.yaml")
	os.WriteFile(noKafka, []byte("cluster:\n  enabled: true\nstore:\n  driver: postgres\n  dsn: postgres://db/g\n"), 0o600)
	for file, want := range map[string]string{broken: "cannot parse config", badValue: "25:00",
		noKafka: "cluster.enabled needs kafka.brokers"} {
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

const twoCustomers = "户号,表号,台区,网格,手机\n0100000001,330000000001,TA-1,G01,138 1234 5678\n0100000002,330000000002,TA-1,G01,无\n"

// TestContactsImport: on each store, into a data_dir that does not exist
// yet, an import prints a short summary (not a Go struct), writes the
// reject file, and importing the same file again reports nothing changed.
func TestContactsImport(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			dir := t.TempDir()
			sc := storetest.Config(t, driver)
			t.Setenv("GRIDBELL_DATA_DIR", filepath.Join(dir, "new", "data"))
			t.Setenv("GRIDBELL_STORE_DRIVER", sc.Driver)
			t.Setenv("GRIDBELL_STORE_DSN", sc.DSN)
			f := filepath.Join(dir, "contacts.csv")
			os.WriteFile(f, []byte(twoCustomers), 0o600)
			out, err := execute(t, "contacts", "import", f)
			if err != nil {
				t.Fatalf("contacts import: %v\n%s", err, out)
			}
			for _, want := range []string{"imported 2 of 2 rows", "2 added, 0 updated, 0 unchanged", "1 fixed", "1 invalid"} {
				if !strings.Contains(out, want) {
					t.Errorf("summary lacks %q:\n%s", want, out)
				}
			}
			if strings.ContainsAny(out, "{}") || len(out) > 1000 {
				t.Errorf("summary is not short prose (%d bytes):\n%s", len(out), out)
			}
			if _, err := os.Stat(filepath.Join(dir, "new", "data", "contacts-rejects.csv")); err != nil {
				t.Errorf("reject file: %v", err)
			}
			out, err = execute(t, "contacts", "import", f)
			if err != nil || !strings.Contains(out, "0 added, 0 updated, 2 unchanged, 0 retired") {
				t.Errorf("re-import of the same file = %v:\n%s\nwant 0 added, 0 updated, 2 unchanged", err, out)
			}
		})
	}
}

// TestContactsImportMissingFile: a missing file is named before any store
// is opened or data_dir made.
func TestContactsImportMissingFile(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	t.Setenv("GRIDBELL_DATA_DIR", data)
	_, err := execute(t, "contacts", "import", filepath.Join(t.TempDir(), "nope.csv"))
	if err == nil || !strings.Contains(err.Error(), "nope.csv") {
		t.Errorf("import of a missing file = %v, want an error naming it", err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("data_dir after the failed import: %v, want it not made", err)
	}
}

// TestDeadLetterListEmpty: an empty list says so.
func TestDeadLetterListEmpty(t *testing.T) {
	t.Setenv("GRIDBELL_DATA_DIR", t.TempDir())
	out, err := execute(t, "deadletter", "list")
	if err != nil || !strings.Contains(out, "no dead letters") {
		t.Errorf("deadletter list on an empty store = %v, %q, want it to say there are none", err, out)
	}
}

// TestUnknownEnvironment: a misspelt GRIDBELL_ variable stops the command
// and suggests the key meant.
func TestUnknownEnvironment(t *testing.T) {
	t.Setenv("GRIDBELL_RULES_MOMENTRY", "90s")
	_, err := execute(t, "run", "--check-config")
	if err == nil || !strings.Contains(err.Error(), "GRIDBELL_RULES_MOMENTARY") {
		t.Errorf("run --check-config with GRIDBELL_RULES_MOMENTRY = %v, want an error suggesting GRIDBELL_RULES_MOMENTARY", err)
	}
}

// TestPrintConfigMasksURLs (issue 21): a password in the store DSN, the
// InfluxDB URL or an MQTT broker URL shows as *** in --print-config and in
// a config error.
func TestPrintConfigMasksURLs(t *testing.T) {
	t.Setenv("GRIDBELL_DATA_DIR", t.TempDir())
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte(`store: {driver: postgres, dsn: "postgres://gridbell:pg-SECRET-1@db:5432/g?sslmode=disable"}
influx: {url: "https://admin:influx-SECRET-2@influx.example:8086", bucket: meters}
mqtt: {brokers: ["tcp://headend:mqtt-SECRET-3@broker.example:1883"]}
`), 0o600)
	out, err := execute(t, "run", "--print-config", "--config", cfg)
	if err != nil {
		t.Fatalf("--print-config: %v\n%s", err, out)
	}
	for _, want := range []string{"postgres://gridbell:***@db:5432/g", "https://admin:***@influx.example:8086", "tcp://headend:***@broker.example:1883"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
	kv := filepath.Join(t.TempDir(), "kv.yaml")
	os.WriteFile(kv, []byte(`store: {driver: postgres, dsn: "host=db user=gridbell password=pg-SECRET-4 dbname=g"}`+"\n"), 0o600)
	kvOut, err := execute(t, "run", "--print-config", "--config", kv)
	if err != nil || !strings.Contains(kvOut, "password=***") {
		t.Errorf("--print-config of a key=value DSN = %v:\n%s", err, kvOut)
	}
	out += kvOut
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`influx: {url: "https://admin:influx-SECRET-5@", bucket: meters}`+"\n"), 0o600)
	_, err = execute(t, "run", "--check-config", "--config", bad)
	if err == nil || !strings.Contains(err.Error(), "influx.url") {
		t.Fatalf("a URL without a host = %v, want an influx.url error", err)
	}
	out += err.Error()
	if strings.Contains(out, "SECRET") {
		t.Errorf("a password shows:\n%s", out)
	}
}

// TestDeadLetterListText: refused input is listed as the text it was (a
// person reads JSON, not its base64), binary input in base64, each saying
// which.
func TestDeadLetterListText(t *testing.T) {
	t.Setenv("GRIDBELL_DATA_DIR", t.TempDir())
	cfg, err := config.Load("", os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	dl, closeFn, err := app.OpenDeadLetters(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	text := `{"meter":"330000000001","type":"power_of"}`
	binary := []byte{0xff, 0xfe, 0x00, 0x01}
	for _, raw := range [][]byte{[]byte(text), binary} {
		if err := dl.Put(context.Background(), "mqtt", "ami/meter/1/event", "bad_type: power_of", raw); err != nil {
			t.Fatal(err)
		}
	}
	closeFn()
	out, err := execute(t, "deadletter", "list")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l struct {
			Raw         string `json:"raw"`
			RawEncoding string `json:"raw_encoding"`
			Reason      string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Reason == "" {
			t.Fatalf("line %q: %v", line, err)
		}
		got[l.RawEncoding] = l.Raw
	}
	if got["text"] != text || got["base64"] != base64.StdEncoding.EncodeToString(binary) {
		t.Errorf("deadletter list raws = %q, want the JSON as text and the binary in base64", got)
	}
}
