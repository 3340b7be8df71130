// Package faults starts private servers for fault tests, so a test can stop,
// kill and restart them without touching the shared servers other tests
// use: a PostgreSQL cluster (initdb and pg_ctl, run as user postgres), a
// Mosquitto broker, and a small file system that really fills. Where a
// server cannot be started the test is skipped, except under CI=true where
// it fails (storetest.Missing).
package faults

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/store/storetest"
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitPort waits until something accepts connections on port, or d passes.
func WaitPort(port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on port %d after %s: %w", port, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Postgres is a private PostgreSQL cluster in a temporary directory.
type Postgres struct {
	Port int
	bin  string
	dir  string
	cred *syscall.Credential
	t    testing.TB
}

// StartPostgres creates and starts a cluster with trust authentication on a
// free port; it is stopped and removed at the end of the test.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		storetest.Missing(t, "postgresql binaries (/usr/lib/postgresql/*/bin)", os.ErrNotExist)
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil || os.Geteuid() != 0 {
		storetest.Missing(t, "a private postgresql (needs root and user postgres)", err)
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "gridbell-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	p := &Postgres{Port: FreePort(t), bin: filepath.Dir(bins[len(bins)-1]), dir: dir,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, t: t}
	if err := p.run("initdb", "-D", p.data(), "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\nmax_connections = 100\n", p.Port, dir)
	if err := os.WriteFile(filepath.Join(p.data(), "postgresql.auto.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.run("pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop") })
	p.Start()
	return p
}

func (p *Postgres) data() string { return filepath.Join(p.dir, "data") }

// DSN is a pgx DSN of the cluster's postgres database.
func (p *Postgres) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

// Start starts the cluster and waits until it accepts connections.
func (p *Postgres) Start() {
	p.t.Helper()
	if err := p.run("pg_ctl", "-D", p.data(), "-l", filepath.Join(p.dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
		p.t.Fatalf("%v\n%s", err, log)
	}
}

// Stop stops the cluster with a pg_ctl shutdown mode: "fast" (clients are
// disconnected, the cluster checkpoints) or "immediate" (a crash: it
// recovers from its WAL at the next start).
func (p *Postgres) Stop(mode string) {
	p.t.Helper()
	if err := p.run("pg_ctl", "-D", p.data(), "-m", mode, "-w", "stop"); err != nil {
		p.t.Fatal(err)
	}
}

func (p *Postgres) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Dir = p.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w\n%s", name, args, err, out.String())
	}
	return nil
}

// Mosquitto is a private Mosquitto broker that keeps sessions and queued
// QoS 1 messages across a restart (persistence on), as a production broker
// must for at-least-once delivery.
type Mosquitto struct {
	Port  int
	dir   string
	cmd   *exec.Cmd
	t     testing.TB
	extra string // more mosquitto.conf lines (StartMosquittoConf)
}

// StartMosquitto starts a broker on a free port, stopped at the end of the
// test.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		storetest.Missing(t, "mosquitto", err)
		return nil
	}
	m := &Mosquitto{Port: FreePort(t), t: t}
	t.Cleanup(m.Stop)
	m.Start()
	return m
}

// StartMosquittoConf starts a broker as StartMosquitto does, with extra
// mosquitto.conf lines after its own (a later line overrides an earlier
// one, such as max_queued_messages).
func StartMosquittoConf(t testing.TB, extra string) *Mosquitto {
	t.Helper()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		storetest.Missing(t, "mosquitto", err)
		return nil
	}
	m := &Mosquitto{Port: FreePort(t), t: t, extra: extra}
	t.Cleanup(m.Stop)
	m.Start()
	return m
}

// URL is the broker's tcp:// address.
func (m *Mosquitto) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.Port) }

// Start (re)starts the broker and waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	if m.dir == "" {
		m.dir = m.t.TempDir()
		conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\npersistence_location %s/\nautosave_interval 1\nmax_queued_messages 0\n%s\n", m.Port, m.dir, m.extra)
		if err := os.WriteFile(filepath.Join(m.dir, "mosquitto.conf"), []byte(conf), 0o644); err != nil {
			m.t.Fatal(err)
		}
	}
	m.cmd = exec.Command("mosquitto", "-c", filepath.Join(m.dir, "mosquitto.conf"))
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	if err := WaitPort(m.Port, 10*time.Second); err != nil {
		m.t.Fatal(err)
	}
}

// Stop stops the broker (SIGTERM) and waits for it to exit.
func (m *Mosquitto) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	m.cmd.Wait()
	m.cmd = nil
}

// SmallDisk mounts a tmpfs of size bytes on a fresh directory and returns
// it; it is unmounted at the end of the test. Without the right to mount it
// skips (fails under CI=true).
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		storetest.Missing(t, "a mounted tmpfs (needs root)", fmt.Errorf("%w: %s", err, out))
		return ""
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// Fill writes a file in dir until the file system is full and returns a
// function that removes it again.
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for len(buf) > 1 { // the last pages
		buf = buf[:len(buf)/2]
		for {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
	}
	f.Close()
	return func() { os.Remove(path) }
}
