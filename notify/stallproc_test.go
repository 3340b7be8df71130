package notify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

// The environment of TestStallChild, the dispatcher process of TestSIGSTOP
// and TestClockAheadProcess: the PostgreSQL DSN, the Twilio URL, the
// instance name, and how far its clock runs ahead.
const (
	stallDSN   = "GRIDBELL_NOTIFY_STALL_DSN"
	stallURL   = "GRIDBELL_NOTIFY_STALL_URL"
	stallName  = "GRIDBELL_NOTIFY_STALL_NAME"
	stallAhead = "GRIDBELL_NOTIFY_STALL_AHEAD"
)

// TestStallChild is one instance of TestSIGSTOP or TestClockAheadProcess;
// it is skipped unless run as their child. It dispatches the shared outbox
// until it is empty.
func TestStallChild(t *testing.T) {
	dsn := os.Getenv(stallDSN)
	if dsn == "" {
		t.Skip("runs only as TestSIGSTOP's or TestClockAheadProcess's child")
	}
	db, err := store.Open(context.Background(), store.Config{Driver: "postgres", DSN: dsn}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := crashConfig(os.Getenv(stallURL))
	snd, err := NewSender(cfg, t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var clk clock.Clock = clock.Real{}
	if s := os.Getenv(stallAhead); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		clk = aheadClock{d}
	}
	o, err := NewOutbox(cfg, QuietHours{}, db, loadRegistry(t, db, 0), snd, clk, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	o.SetInstance(os.Getenv(stallName))
	dispatchUntilEmpty(t, o, db)
}

// stallRun is one run of two instances sharing an outbox on PostgreSQL: a
// child process (TestStallChild) and a peer in the test process, sending
// n messages to a Twilio-shaped server that answers in 300 ms.
type stallRun struct {
	t     *testing.T
	n     int
	srv   *twiliotest.Server
	db    *store.DB
	peer  *Outbox
	sent  *countingSender // what the peer handed to the provider
	child *exec.Cmd
	done  chan struct{} // closed when the child has exited, with err
	err   error
}

func newStallRun(t *testing.T, n int, childName string, ahead time.Duration) *stallRun {
	t.Helper()
	srv := twiliotest.New(testSID, testToken)
	t.Cleanup(srv.Close)
	srv.SetLatency(300 * time.Millisecond)
	cfg := storetest.Config(t, "postgres")
	db, err := store.Open(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sent := &countingSender{Sender: mustSender(t, srv.URL)}
	peer, err := NewOutbox(crashConfig(srv.URL), QuietHours{}, db, loadRegistry(t, db, n), sent, clock.Real{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	peer.SetInstance("gridbell-peer")
	if err := peer.Enqueue(context.Background(), nil, loadIntents(n, time.Now())); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStallChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), stallDSN+"="+cfg.DSN, stallURL+"="+srv.URL, stallName+"="+childName)
	if ahead != 0 {
		cmd.Env = append(cmd.Env, stallAhead+"="+ahead.String())
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &stallRun{t: t, n: n, srv: srv, db: db, peer: peer, sent: sent, child: cmd, done: make(chan struct{})}
	go func() { r.err = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		<-r.done
	})
	return r
}

func mustSender(t *testing.T, url string) Sender {
	t.Helper()
	snd, err := NewSender(crashConfig(url), t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return snd
}

// childClaims counts the messages the child holds claimed.
func (r *stallRun) childClaims(name string) int {
	var n int
	r.db.QueryRow(`SELECT COUNT(*) FROM notify_messages WHERE status = 'sending' AND claimed_by = $1`, name).Scan(&n)
	return n
}

// finish runs the peer until the child has exited and the outbox is
// empty, then counts per phone, kind and reference what the provider
// received: none may be lost or doubled, and every row must name the
// message the provider holds for it.
func (r *stallRun) finish(stopPeer func() error) {
	t := r.t
	t.Helper()
	ctx := context.Background()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("child: %v", r.err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the child did not finish")
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if left, err := unsettled(r.db); err == nil && left == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // let anything wrongly queued show up
	if err := stopPeer(); err != nil {
		t.Error(err)
	}
	type key struct{ to, body string }
	seen := map[key]int{}
	for _, m := range r.srv.Received() {
		seen[key{m.To, m.Body}]++
	}
	var twice []string
	rows, err := r.db.QueryContext(ctx, `SELECT phone, kind, ref, body FROM notify_messages`)
	if err != nil {
		t.Fatal(err)
	}
	lost, doubled := 0, 0
	for rows.Next() {
		var phone, kind, ref, body string
		if err := rows.Scan(&phone, &kind, &ref, &body); err != nil {
			t.Fatal(err)
		}
		switch c := seen[key{phone, body}]; {
		case c == 0:
			lost++
		case c > 1:
			doubled += c - 1
			twice = append(twice, fmt.Sprintf("%s %s %s ×%d", phone, kind, ref, c))
		}
	}
	rows.Close()
	t.Logf("%d messages: lost %d, doubled %d; %d lookups at the provider", r.n, lost, doubled, r.srv.Lookups())
	if len(twice) > 0 {
		t.Logf("doubled, for example: %v", twice[:min(len(twice), 5)])
	}
	if lost != 0 || doubled != 0 {
		t.Errorf("lost %d and doubled %d of %d messages, want none", lost, doubled, r.n)
	}
	checkRows(t, r.peer, r.srv, r.n)
}

// runPeer runs the peer in the background until stop.
func (r *stallRun) runPeer() (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.peer.Run(ctx) }()
	stop = sync.OnceValue(func() error { cancel(); return <-done })
	r.t.Cleanup(func() { stop() })
	return stop
}

// TestSIGSTOP: two instances send 600 messages; one, a process, is frozen
// (SIGSTOP) for 25 s while it holds claimed messages, past every lease,
// and then resumed. The other takes its claims over when their lease
// lapses and sends them; the resumed one sends none of them again and
// records nothing over them.
func TestSIGSTOP(t *testing.T) {
	if testing.Short() {
		t.Skip("a 25 s stop")
	}
	const n = 600
	r := newStallRun(t, n, "gridbell-stalled", 0)
	stop := r.runPeer()
	deadline := time.Now().Add(60 * time.Second)
	for (r.childClaims("gridbell-stalled") < 64 || r.srv.Count() < 60) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.child.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	held, at := r.childClaims("gridbell-stalled"), r.srv.Count()
	t.Logf("SIGSTOP with %d messages claimed by the child, %d received by the provider", held, at)
	if held == 0 || at >= n {
		t.Fatalf("the child held %d claims at the stop and %d of %d were sent: the stop proves nothing", held, at, n)
	}
	time.Sleep(25 * time.Second)
	if left := r.childClaims("gridbell-stalled"); left > 0 {
		t.Logf("%d of its claims still the child's after 25 s", left)
	}
	if err := r.child.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	r.finish(stop)
}

// TestClockAheadProcess: two instances send 600 messages; one, a process,
// has a clock 30 s ahead. It takes none of the other's live claims as
// lapsed, and nothing goes twice.
func TestClockAheadProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("two processes")
	}
	const n = 600
	r := newStallRun(t, n, "gridbell-ahead", 30*time.Second)
	stop := r.runPeer()
	r.finish(stop)
	// Unless both sent, the child had no live claim of the peer's to take.
	if k := r.sent.n.Load(); k == 0 || k >= n {
		t.Errorf("the peer sent %d of %d messages, want both instances sending", k, n)
	}
	// Nobody stopped: a lookup means a live claim was taken as lapsed.
	if k := r.srv.Lookups(); k != 0 {
		t.Errorf("%d lookups at the provider: live claims were taken over as lapsed", k)
	}
}
