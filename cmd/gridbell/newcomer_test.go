package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/config"
)

// TestNewcomerPath follows the README as a new user does, building nothing:
// its first commands are Makefile targets, `make run` runs the command the
// README describes (gridbell run --demo), here run in-process in an empty
// directory, and data/outbox.jsonl holds an outage line within the minute
// the README promises, while the web page answers. Only the two ports
// differ from the README's (other tests share this machine); that they are
// the defaults is checked from the configuration.
func TestNewcomerPath(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README.md starts with no ```sh block of commands")
	}
	var targets []string
	for _, line := range strings.Split(strings.TrimSpace(string(block[1])), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "make" {
			t.Fatalf("README's first commands: %q is not a make target", line)
		}
		targets = append(targets, f[1])
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(f[1]) + `:`).Match(makefile) {
			t.Errorf("README tells a newcomer to run `make %s`; the Makefile has no such target", f[1])
		}
	}
	if len(targets) == 0 || targets[0] != "run" {
		t.Fatalf("README's first command is %v, want make run", targets)
	}
	args := runRecipe(t, string(makefile))
	if strings.Join(args, " ") != "run --demo" || !strings.Contains(string(readme), "`gridbell run --demo`") {
		t.Fatalf("make run runs gridbell %v; the README says `gridbell run --demo`", args)
	}

	// The README's addresses are the defaults.
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{cfg.HTTP.Listen, cfg.MQTT.EmbeddedListen} {
		if !strings.Contains(string(readme), addr) {
			t.Errorf("the default address %s is not the README's", addr)
		}
	}

	dir := t.TempDir()
	t.Chdir(dir)
	web := freeAddr(t)
	t.Setenv("GRIDBELL_HTTP_LISTEN", web)
	t.Setenv("GRIDBELL_MQTT_EMBEDDED_LISTEN", freeAddr(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	done := make(chan error, 1)
	go func() {
		cmd := rootCmd()
		cmd.SetArgs(args)
		done <- cmd.ExecuteContext(ctx)
	}()
	outbox := filepath.Join(dir, "data", "outbox.jsonl")
	var first map[string]any
	for first == nil {
		select {
		case err := <-done:
			t.Fatalf("gridbell run --demo stopped: %v", err)
		case <-time.After(250 * time.Millisecond):
		}
		first = firstOutage(outbox)
		if first == nil && time.Since(began) > time.Minute {
			t.Fatalf("no outage line in %s a minute after the start, as the README promises", outbox)
		}
	}
	t.Logf("first outage line %v after the start: %v", time.Since(began).Round(100*time.Millisecond), first)
	res, err := http.Get("http://" + web + "/")
	if err != nil || res.StatusCode != 200 {
		t.Errorf("the web page: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("gridbell run --demo after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("gridbell run --demo did not stop within 30 s of its context's end")
	}
}

// runRecipe is what `make run` runs of the binary: the arguments after
// ./$(BIN) on the recipe's last line.
func runRecipe(t *testing.T, makefile string) []string {
	t.Helper()
	i := strings.Index(makefile, "\nrun:")
	if i < 0 {
		t.Fatal("the Makefile has no run target")
	}
	var last string
	sc := bufio.NewScanner(strings.NewReader(makefile[i+1:]))
	sc.Scan() // the rule
	for sc.Scan() && strings.HasPrefix(sc.Text(), "\t") {
		last = strings.TrimSpace(sc.Text())
	}
	rest, ok := strings.CutPrefix(last, "./$(BIN) ")
	if !ok {
		t.Fatalf("make run's last step is %q, not the binary", last)
	}
	return strings.Fields(rest)
}

// firstOutage is the first outage line of the outbox file, or nil.
func firstOutage(path string) map[string]any {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["kind"] == "outage" {
			return m
		}
	}
	return nil
}
