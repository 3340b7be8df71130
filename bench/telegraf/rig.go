package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gridbell/gridbell/ingest/influxtest"
)

// consumer is Telegraf or gridbell: started on a rig, ready once it has
// subscribed.
type consumer interface {
	name() string
	start(dir, mqttURL, influxURL, database string, w workload) (*proc, error)
}

type result struct {
	name      string
	arrived   int64
	elapsed   time.Duration
	cpu       float64 // consumer CPU-s from just before the first publish to the last point
	influxCPU float64
	peakRSS   int64
	load      string
}

// runOne runs consumer c on a fresh Mosquitto and influxd under dir.
func runOne(dir string, c consumer, w workload) (result, error) {
	res := result{name: c.name()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	mq, mqttURL, err := startMosquitto(dir)
	if err != nil {
		return res, err
	}
	defer stop(mq)
	influx, err := influxtest.Launch(filepath.Join(dir, "influx"))
	if err != nil {
		return res, err
	}
	defer influx.Stop()
	cmd, err := c.start(dir, mqttURL, influx.URL, influxtest.Database, w)
	if err != nil {
		return res, err
	}
	defer stop(cmd)
	msgs := w.messages()
	load, _ := os.ReadFile("/proc/loadavg")
	res.load = strings.Join(strings.Fields(string(load))[:3], " ")
	pid, ipid := cmd.pid(), influx.Pid()
	c0, i0 := cpuSeconds(pid), cpuSeconds(ipid)
	begin := time.Now()
	if err := publish(mqttURL, w.conns, msgs); err != nil {
		return res, err
	}
	// Poll influxd's accepted-points counter; CPU is taken at its last change,
	// before the confirming count query loads influxd.
	var last int64 = -1
	lastChange := time.Now()
	var cAt, iAt float64
	for time.Since(lastChange) < 30*time.Second && last < int64(w.n) {
		ok, err := writtenOK(influx.URL)
		if err == nil && ok != last {
			last, lastChange = ok, time.Now()
			cAt, iAt = cpuSeconds(pid), cpuSeconds(ipid)
		}
		if cmd.exited() {
			return res, fmt.Errorf("%s exited", c.name())
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.elapsed = lastChange.Sub(begin)
	res.cpu, res.influxCPU = cAt-c0, iAt-i0
	res.peakRSS = peakRSS(pid)
	n, err := influx.Count("reading")
	res.arrived = int64(n)
	if err != nil {
		return res, fmt.Errorf("cannot count the points: %w", err)
	}
	if n < w.n {
		return res, fmt.Errorf("only %d of %d readings reached InfluxDB (log in %s)", n, w.n, dir)
	}
	return res, nil
}

func startMosquitto(dir string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
log_dest stderr
log_type error
log_type warning
`, port)), 0o644)
	if err != nil {
		return nil, "", err
	}
	bin := "/usr/sbin/mosquitto"
	if p, err := exec.LookPath("mosquitto"); err == nil {
		bin = p
	}
	cmd, err := spawn(dir, "mosquitto", nil, bin, "-c", conf)
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitUntil(15*time.Second, func() bool { return dial(addr) }); err != nil {
		stop(cmd)
		return nil, "", fmt.Errorf("mosquitto did not listen on %s", addr)
	}
	return cmd, "tcp://" + addr, nil
}

// proc is a process this program started.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exits
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// spawn starts a process with its output in dir/name.log.
func spawn(dir, name string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// stop ends p: TERM, then KILL after 10 s.
func stop(p *proc) {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func waitUntil(d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func dial(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cpuSeconds is utime+stime of a process from /proc/PID/stat.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // USER_HZ
}

// peakRSS is a process's VmHWM in bytes.
func peakRSS(pid int) int64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// writtenOK is influxd's count of points accepted over HTTP (/debug/vars).
func writtenOK(base string) (int64, error) {
	resp, err := http.Get(base + "/debug/vars")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var vars map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		return 0, err
	}
	var total int64
	for k, v := range vars {
		var s struct {
			Values map[string]int64 `json:"values"`
		}
		if strings.HasPrefix(k, "httpd") && json.Unmarshal(v, &s) == nil {
			total += s.Values["pointsWrittenOK"]
		}
	}
	return total, nil
}
