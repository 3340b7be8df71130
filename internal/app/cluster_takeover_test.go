package app_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/store"
)

// lockedBuffer is a log an instance writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLogged starts instance name in this process with its warnings and
// errors kept in the returned buffer as well as the test's log.
func (env *clusterEnv) startLogged(t *testing.T, name string) (*clusterInstance, *lockedBuffer) {
	t.Helper()
	cfg, listen := env.config(t, name)
	buf := &lockedBuffer{}
	log := zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), buf)).Level(zerolog.WarnLevel).With().Str("instance", name).Logger()
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return env.run(t, name, listen, cfg, a), buf
}

// leaderOf returns the index of the instance running the rules, or -1.
func leaderOf(ins []*clusterInstance) int {
	for i, in := range ins {
		if in != nil && in.app.RulesLeader() {
			return i
		}
	}
	return -1
}

// TestClusterTakeoverOutlastsLease: the state load after a takeover is
// made to outlast the rules lease (made short here, and the load slowed
// as a large fleet's is), with two instances waiting for the lease. The
// instance that took it keeps it while it loads, and runs the rules; no
// instance stops with a lost lease, and each customer gets one outage and
// one restored SMS across the takeover.
func TestClusterTakeoverOutlastsLease(t *testing.T) {
	const ttl = 3 * time.Second
	t.Cleanup(app.SetRulesLeaseTTL(ttl)) // runs after the instances stopped
	t.Cleanup(func() { app.SetTakeoverDelay(0) })
	env := newClusterEnv(t)
	first := env.start(t, "t1")
	waitFor(t, "t1 running the rules", 60*time.Second, func() bool { return first.app.RulesLeader() })
	ins := []*clusterInstance{first, env.start(t, "t2"), env.start(t, "t3")}
	for _, in := range ins {
		waitFor(t, in.name+" ready", 60*time.Second, func() bool { return in.app.Ready() == nil })
	}
	app.SetTakeoverDelay(4 * ttl)

	publish := mqttPublisher(t, "tcp://127.0.0.1:1883", env.prefix)
	now := time.Now()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	publishReadings(publish, ts(-time.Minute))
	publish("C-1/event", map[string]any{"concentrator": "C-1", "ts": ts(0), "type": "power_off"})
	ta1 := []string{"+8613812345601", "+8613812345602", "+8613812345603"}
	waitFor(t, "outage SMS for TA-1", 60*time.Second, func() bool { return len(sent(t, ins, "outage")) >= len(ta1) })

	first.stop()
	took := time.Now()
	rest := ins[1:]
	waitFor(t, "another instance running the rules", 60*time.Second, func() bool { return leaderOf(rest) >= 0 })
	if d := time.Since(took); d < 4*ttl {
		t.Fatalf("%s ran the rules %s after the stop, before its load was over", rest[leaderOf(rest)].name, d)
	}
	publish("C-1/event", map[string]any{"concentrator": "C-1", "ts": ts(10 * time.Second), "type": "power_on"})
	for i := 1; i <= 4; i++ {
		publish(fmt.Sprintf("C-1/33000000000%d/event", i), map[string]any{"meter": fmt.Sprintf("33000000000%d", i), "ts": ts(10 * time.Second), "type": "power_on"})
	}
	waitFor(t, "restored SMS for TA-1", 90*time.Second, func() bool { return len(sent(t, ins, "restored")) >= len(ta1) })
	time.Sleep(3 * time.Second) // let anything wrongly queued show up
	outage, restored := sent(t, ins, "outage"), sent(t, ins, "restored")
	for _, p := range ta1 {
		if outage[p] != 1 || restored[p] != 1 {
			t.Errorf("%s got %d outage and %d restored SMS, want 1 each", p, outage[p], restored[p])
		}
	}
	if len(outage) != len(ta1) || len(restored) != len(ta1) {
		t.Errorf("outage SMS to %v, restored SMS to %v, want TA-1's %d phones", outage, restored, len(ta1))
	}
	if i := leaderOf(rest); i < 0 {
		t.Error("no instance runs the rules at the end")
	}
	// Each instance's Run must return nil when stopped (env.run checks):
	// a loader that lost the lease would have ended with an error.
	for _, in := range rest {
		in.stop()
	}
}

// TestClusterGracefulHandover: the instance running the rules is stopped
// gracefully. Its last commit (the last-seen times and first signs of
// power it kept in memory) lands under its lease, which it releases only
// then: no commit of it is refused (nor reloads the state), and the next
// holder shows every meter's reading without a full load.
func TestClusterGracefulHandover(t *testing.T) {
	env := newClusterEnv(t)
	first, log := env.startLogged(t, "g1")
	waitFor(t, "g1 running the rules", 60*time.Second, func() bool { return first.app.RulesLeader() })
	second := env.start(t, "g2")
	waitFor(t, "g2 ready", 60*time.Second, func() bool { return second.app.Ready() == nil })

	publish := mqttPublisher(t, "tcp://127.0.0.1:1883", env.prefix)
	accounts := []string{"0100000001", "0100000002", "0100000003", "0100000005", "0100000006", "0100000007", "0100000008"}
	shows := func(in *clusterInstance, seen time.Time) bool {
		for _, acct := range accounts {
			ms := in.app.Rules.MetersOf(acct)
			if len(ms) == 0 || !ms[0].Powered || ms[0].LastSeen == nil || !ms[0].LastSeen.Equal(seen) {
				return false
			}
		}
		return true
	}
	// Two rounds of readings: the second is applied less than a second
	// after the first was committed, so its last-seen times wait in memory
	// for the next commit, which is the stop's.
	seen := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	publishReadings(publish, seen.Format(time.RFC3339Nano))
	waitFor(t, "g1 applied the readings", 60*time.Second, func() bool { return shows(first, seen) })
	seen = seen.Add(time.Second)
	publishReadings(publish, seen.Format(time.RFC3339Nano))
	waitFor(t, "g1 applied the second readings", 60*time.Second, func() bool { return shows(first, seen) })
	first.stop()
	waitFor(t, "g2 running the rules", 45*time.Second, func() bool { return second.app.RulesLeader() })
	if !shows(second, seen) {
		for _, acct := range accounts {
			t.Logf("%s: %+v", acct, second.app.Rules.MetersOf(acct))
		}
		t.Errorf("the next holder does not show every meter powered and last seen at %s", seen)
	}
	// A refused last commit reloaded the whole state during the stop; the
	// successor follows the commits and takes over without a load.
	for _, in := range []*clusterInstance{first, second} {
		if n := in.app.Rules.FullLoads(); n != 1 {
			t.Errorf("%s loaded the rules' whole state %d times, want once (at start)", in.name, n)
		}
	}
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			t.Errorf("g1 logged an error while stopping: %s", line)
		}
	}
}

// TestClusterContactsImportedOnce: instances started with different
// contacts_files import the cluster's contacts once. The first imports its
// file; one started later with a copy of it imports nothing, and one
// started with a stale file (older, with another name for a customer)
// imports nothing either and uses the stored registry: no rollback.
func TestClusterContactsImportedOnce(t *testing.T) {
	env := newClusterEnv(t)
	copyPath := filepath.Join(env.dir, "copy.csv")
	stalePath := filepath.Join(env.dir, "stale.csv")
	if err := os.WriteFile(copyPath, []byte(contactsCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := strings.Replace(contactsCSV, "Li Lei", "Li Lei (moved away)", 1)
	if err := os.WriteFile(stalePath, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(stalePath, old, old); err != nil {
		t.Fatal(err)
	}
	// startWith starts instances named names with the contacts files
	// paths, together; t.Fatal only on the test's goroutine.
	startWith := func(names, paths []string) []*clusterInstance {
		ins := make([]*clusterInstance, len(names))
		apps := make([]*app.App, len(names))
		errs := make([]error, len(names))
		cfgs := make([]*config.Config, len(names))
		listens := make([]string, len(names))
		var wg sync.WaitGroup
		for i, name := range names {
			cfgs[i], listens[i] = env.config(t, name)
			cfgs[i].ContactsFile = paths[i]
			log := env.logger(t, name)
			wg.Go(func() { apps[i], errs[i] = app.New(context.Background(), cfgs[i], log) })
		}
		wg.Wait()
		for i, name := range names {
			if errs[i] != nil {
				t.Errorf("%s: %v", name, errs[i])
				continue
			}
			ins[i] = env.run(t, name, listens[i], cfgs[i], apps[i])
		}
		if t.Failed() {
			t.FailNow()
		}
		return ins
	}
	first := startWith([]string{"k1"}, []string{env.contacts})[0]
	later := startWith([]string{"k2", "k3"}, []string{copyPath, stalePath})
	db, err := store.Open(context.Background(), env.store, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var imports int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM contacts_imports`).Scan(&imports); err != nil {
		t.Fatal(err)
	}
	if imports != 1 {
		t.Errorf("%d contacts imports by three instances, want 1", imports)
	}
	for _, in := range append([]*clusterInstance{first}, later...) {
		if a, ok := in.app.Contacts.Account("0100000001"); !ok || a.Name != "Li Lei" {
			t.Errorf("%s: account 0100000001 = %+v, want Li Lei's (the newer file's)", in.name, a)
		}
	}
}
