package notify

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify/notifytest"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

// crashEnv, set in a child's environment, makes TestCrashChild run the
// dispatcher: GRIDBELL_NOTIFY_CRASH_CHILD=<data dir>|<twilio url>|<n>.
const crashEnv = "GRIDBELL_NOTIFY_CRASH_CHILD"

// loadRegistry opens db's contacts registry and, when n > 0, imports
// notifytest.Residents(n) into it.
func loadRegistry(tb testing.TB, db *store.DB, n int) *contacts.Registry {
	tb.Helper()
	reg, err := contacts.Open(context.Background(), db, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	if n == 0 {
		return reg
	}
	if _, err := reg.Import(context.Background(), strings.NewReader(notifytest.Residents(n)), io.Discard); err != nil {
		tb.Fatal(err)
	}
	return reg
}

func loadIntents(n int, now time.Time) []event.Intent {
	ins := make([]event.Intent, n)
	for i := range ins {
		ins[i] = event.Intent{Key: fmt.Sprintf("outage|OMS-LOAD|01%08d", i), Kind: event.KindOutage,
			Account: fmt.Sprintf("01%08d", i), Ref: "OMS-LOAD", Grid: "G01", Vars: outageVars,
			Priority: event.PriorityOutage, CreatedAt: now}
	}
	return ins
}

func openCrashStore(t *testing.T, dir string) *store.DB {
	db, err := store.Open(context.Background(), store.Config{Driver: "sqlite"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func crashConfig(url string) Config {
	cfg := Config{Sender: "twilio", Twilio: twilioConfig(url), Workers: 16}
	cfg.Twilio.Rate = 100000
	return cfg
}

// TestCrashChild is the dispatcher process of TestSIGKILL; it is skipped
// unless run as that child. It dispatches until the outbox is empty.
func TestCrashChild(t *testing.T) {
	env := os.Getenv(crashEnv)
	if env == "" {
		t.Skip("runs only as TestSIGKILL's child")
	}
	var dir, url string
	var n int
	if _, err := fmt.Sscanf(env, "%s %s %d", &dir, &url, &n); err != nil {
		t.Fatal(err)
	}
	db := openCrashStore(t, dir)
	cfg := crashConfig(url)
	snd, err := NewSender(cfg, dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOutbox(cfg, QuietHours{}, db, loadRegistry(t, db, 0), snd, clock.Real{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	dispatchUntilEmpty(t, o, db)
}

// unsettled counts what the outbox of db still has to do.
func unsettled(db *store.DB) (int, error) {
	var left int
	err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM notify_intents WHERE state = 'pending') + (SELECT COALESCE(SUM(n), 0) FROM notify_intent_log) +
		(SELECT COUNT(*) FROM notify_messages WHERE status IN ('queued', 'held', 'sending'))`).Scan(&left)
	return left, err
}

// dispatchUntilEmpty runs o, the outbox of db, until nothing is left to
// send: what a child process of TestSIGKILL or TestSIGSTOP does.
func dispatchUntilEmpty(t *testing.T, o *Outbox, db *store.DB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- o.Run(ctx) }()
	for {
		time.Sleep(50 * time.Millisecond)
		left, err := unsettled(db)
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSIGKILL kills the dispatcher with SIGKILL while it sends 10,000
// messages through Twilio, restarts it, and counts lost and duplicated
// ones: none may be either. The messages the kill left "sending" are looked
// up at Twilio before they are sent again, so those it already holds (the
// child was killed before it could record them) do not go twice.
func TestSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const n = 10000
	srv := twiliotest.New(testSID, testToken)
	defer srv.Close()
	dir := t.TempDir()
	db := openCrashStore(t, dir)
	o, err := NewOutbox(crashConfig(srv.URL), QuietHours{}, db, loadRegistry(t, db, n), &recorder{}, clock.Real{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Enqueue(context.Background(), nil, loadIntents(n, time.Now())); err != nil {
		t.Fatal(err)
	}
	db.Close()
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", crashEnv, dir, srv.URL, n))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := child()
	deadline := time.Now().Add(60 * time.Second)
	for srv.Count() < n*3/10 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	first.Wait()
	atKill := srv.Count()
	if atKill >= n {
		t.Fatalf("the child sent everything (%d) before the kill", atKill)
	}
	second := child()
	if err := second.Wait(); err != nil {
		t.Fatalf("restarted dispatcher: %v", err)
	}
	seen := map[string]int{}
	for _, m := range srv.Received() {
		seen[m.To]++
	}
	lost, dup := 0, 0
	for i := range n {
		switch c := seen[notifytest.Mobile(i)]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	t.Logf("SIGKILL after %d of %d accepted by the API: lost %d, duplicated %d; %d lookups", atKill, n, lost, dup, srv.Lookups())
	if lost != 0 {
		t.Errorf("%d messages lost", lost)
	}
	if dup != 0 {
		t.Errorf("%d messages sent twice: those left sending were not looked up first", dup)
	}
	if srv.Lookups() == 0 {
		t.Error("no lookup at Twilio after the restart: nothing was left sending, so the kill proved nothing")
	}
}
