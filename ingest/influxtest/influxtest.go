// Package influxtest runs a real influxd 1.8 for tests and benchmarks: a
// private config, data under a temp directory, free ports, auth off. Tests
// call Start; programs (bench/ingestload) call Launch. Without an influxd
// binary a test is skipped, or fails under CI=true.
//
// Build the binary once with
//
//	go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10
package influxtest

import (
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/gridbell/gridbell/internal/store/storetest"
)

// Database is the database Start creates; write to bucket "gridbell"
// (or "gridbell/autogen") through /api/v2/write.
const Database = "gridbell"

// Server is a running influxd.
type Server struct {
	URL    string // http://127.0.0.1:port
	Dir    string // config, data and log live here
	bin    string
	config string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Binary finds influxd on PATH or in $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p, err := exec.LookPath("influxd"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "influxd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("influxd not found on PATH or in GOPATH/bin; run: go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10")
}

// Start launches influxd for the test t under t.TempDir() and stops it when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		storetest.Missing(t, "influxd", err)
		return nil
	}
	s, err := launch(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Launch starts influxd with its data under dir; the caller Stops it.
func Launch(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	return launch(bin, dir)
}

func launch(bin, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create influxd directory: %w", err)
	}
	rpc, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", httpPort), Dir: dir, bin: bin,
		config: filepath.Join(dir, "influxdb.conf")}
	conf := fmt.Sprintf(configTemplate, rpc, dir, dir, dir, httpPort)
	if err := os.WriteFile(s.config, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("cannot write influxd config: %w", err)
	}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	if _, err := s.Query(`CREATE DATABASE "` + Database + `"`); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

const configTemplate = `reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%s/meta"
[data]
  dir = "%s/data"
  wal-dir = "%s/wal"
  query-log-enabled = false
  max-values-per-tag = 0
  max-series-per-database = 0
[retention]
  enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:%d"
  auth-enabled = false
  log-enabled = false
  flux-enabled = false
[logging]
  level = "warn"
`

// Restart starts influxd again after Stop, on the same port with the same
// data, and waits until it answers /ping.
func (s *Server) Restart() error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "influxd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cannot open influxd log: %w", err)
	}
	cmd := exec.Command(s.bin, "-config", s.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cannot start influxd: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("influxd exited at start; see %s/influxd.log", s.Dir)
		default:
		}
		if resp, err := http.Get(s.URL + "/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("influxd did not answer %s/ping within 60s", s.URL)
}

// Pid returns influxd's process id, or 0 when it is stopped.
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop stops influxd (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Series is one series of a query result.
type Series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// Query runs InfluxQL q against Database and returns every series of the
// first statement's result.
func (s *Server) Query(q string) ([]Series, error) {
	form := url.Values{"q": {q}, "db": {Database}, "epoch": {"ms"}}
	resp, err := http.PostForm(s.URL+"/query", form)
	if err != nil {
		return nil, fmt.Errorf("cannot query influxd: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Series []Series `json:"series"`
			Error  string   `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("cannot read influxd answer to %q: %w", q, err)
	}
	if out.Error != "" {
		return nil, fmt.Errorf("influxd: %s", out.Error)
	}
	if len(out.Results) == 0 {
		return nil, nil
	}
	if e := out.Results[0].Error; e != "" {
		return nil, fmt.Errorf("influxd: %s", e)
	}
	return out.Results[0].Series, nil
}

// Count returns the number of points of measurement m (counting field kwh).
func (s *Server) Count(m string) (int, error) {
	series, err := s.Query(fmt.Sprintf(`SELECT COUNT("kwh") FROM %q`, m))
	if err != nil || len(series) == 0 || len(series[0].Values) == 0 {
		return 0, err
	}
	n, _ := series[0].Values[0][1].(float64)
	return int(n), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cannot find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
