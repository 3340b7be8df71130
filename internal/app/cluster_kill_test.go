package app_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// stormFleet writes a contacts file of areas × perArea customers, one
// concentrator per area, each customer with their own mobile phone.
func stormFleet(t *testing.T, path string, areas, perArea int) (meters []string, conc map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("account,name,meter,concentrator,area,feeder,grid,manager,manager_phone,class,prepaid,phone,language\n")
	conc = map[string]string{}
	for a := range areas {
		for m := range perArea {
			n := a*perArea + m
			meter := fmt.Sprintf("3400%08d", n)
			c := fmt.Sprintf("CK-%02d", a)
			fmt.Fprintf(&b, "02%08d,C%d,%s,%s,TK-%02d,FK-%d,G%02d,,,resident,false,%s,zh\n", n, n, meter, c, a, a%4, a%5, stormPhone(n)[3:])
			meters = append(meters, meter)
			conc[meter] = c
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return meters, conc
}

// stormPhone is customer n's mobile number (E.164).
func stormPhone(n int) string { return fmt.Sprintf("+86136%08d", 20000000+n) }

// process is one gridbell binary running in distributed mode.
type process struct {
	name, listen string
	dataDir      string
	cmd          *exec.Cmd
	done         chan struct{}
}

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gridbell-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gridbell")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/gridbell/gridbell/cmd/gridbell").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func (env *clusterEnv) spawn(t *testing.T, name string) *process {
	t.Helper()
	return env.spawnWith(t, name)
}

// spawnWith starts instance name with extra environment variables.
func (env *clusterEnv) spawnWith(t *testing.T, name string, extra ...string) *process {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cfg, listen := env.config(t, name)
	envv := append(append(os.Environ(), env.vars(name, listen)...),
		"GRIDBELL_SMS_PHONE_HOURLY=-1",
		"GRIDBELL_LOG_LEVEL=warn",
	)
	envv = append(envv, extra...)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(cfg.DataDir, "..", name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Env, cmd.Stdout, cmd.Stderr = envv, logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{name: name, listen: listen, dataDir: cfg.DataDir, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("%s's log ends:\n%s", name, b)
		}
	})
	return p
}

func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill() // SIGKILL
	<-p.done
}

func (p *process) ready() bool {
	resp, err := http.Get("http://" + p.listen + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func (p *process) outbox() string { return filepath.Join(p.dataDir, "outbox.jsonl") }

// sentBy counts, over the processes' outbox files, the SMS of kind per phone.
func sentBy(t *testing.T, dirs []string, kind string) map[string]int {
	t.Helper()
	var all []outboxLine
	for _, d := range dirs {
		all = append(all, readOutbox(t, filepath.Join(d, "outbox.jsonl"))...)
	}
	return count(all, kind, "")
}

// rulesHolder names the instance that holds the cluster-rules lease.
func rulesHolder(t *testing.T, db *store.DB) string {
	name, _, _ := strings.Cut(rulesLease(db), " ")
	return name
}

// rulesLease is the holder of the cluster-rules lease: instance, pid and a
// random part, so a restarted instance holds it under another.
func rulesLease(db *store.DB) string {
	var h string
	if err := db.QueryRowContext(context.Background(), `SELECT holder FROM store_leases WHERE name = 'cluster-rules'`).Scan(&h); err != nil {
		return ""
	}
	return h
}

// TestClusterSIGKILL: three gridbell processes in distributed mode, a storm
// over 2,000 customers in 40 areas. The process running the rules is
// SIGKILLed in the middle of the power_off burst, and another one in the
// middle of sending the restored SMS; each comes back, as a service
// manager would restart it. Every customer gets an outage and a restored
// SMS, and a second one only for a message a killed process was handing
// to its sender. Then the meter topic is replayed from offset 0: nothing
// new is sent.
func TestClusterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("three processes and a storm")
	}
	env := newClusterEnv(t)
	const areas, perArea = 40, 50
	meters, conc := stormFleet(t, env.contacts, areas, perArea)
	db, procs, dirs := env.startThree(t, "k")

	publish := mqttPublisher(t, "tcp://127.0.0.1:1883", env.prefix)
	now := time.Now()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	restart := func(name string) {
		procs[name].kill()
		procs[name] = env.spawn(t, name)
	}

	// The power_off burst; the process running the rules dies half-way.
	var killed string
	for i, m := range meters {
		publish(conc[m]+"/"+m+"/event", map[string]any{"meter": m, "ts": ts(0), "type": "power_off"})
		if i == len(meters)/2 {
			lease := rulesLease(db)
			killed, _, _ = strings.Cut(lease, " ")
			procs[killed].kill()
			killedAt := time.Now()
			t.Logf("SIGKILLed %s, which ran the rules, after %d power_off events", killed, i+1)
			ended := make(chan struct{})
			t.Cleanup(func() { close(ended) })
			go func() { // how long the rules wait for a new holder (the promise is 30 s)
				for time.Since(killedAt) < time.Minute {
					select {
					case <-ended:
						return
					default:
					}
					if h := rulesLease(db); h != "" && h != lease {
						t.Logf("the rules were taken over by %s %.1f s after the SIGKILL", h, time.Since(killedAt).Seconds())
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
		}
	}
	restart(killed)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		got := sentBy(t, dirs, "outage")
		for i, m := range meters {
			phone := stormPhone(i)
			if got[phone] > 0 {
				continue
			}
			var st, flags int
			var seen int64
			db.QueryRowContext(context.Background(), `SELECT st, flags, seen FROM rules_meters WHERE meter = $1`, m).Scan(&st, &flags, &seen)
			var intents, msgs int
			var status string
			db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM notify_intents WHERE account = $1`, fmt.Sprintf("02%08d", i)).Scan(&intents)
			db.QueryRowContext(context.Background(), `SELECT COUNT(*), MAX(status) FROM notify_messages WHERE phone = $1`, phone).Scan(&msgs, &status)
			t.Logf("no outage SMS to %s (meter %s): rules_meters st %d flags %d seen %d; %d intents, %d messages (%s)", phone, m, st, flags, seen, intents, msgs, status)
		}
	})
	waitFor(t, "an outage SMS to every customer", 3*time.Minute, func() bool {
		n := len(sentBy(t, dirs, "outage"))
		if time.Now().Second()%10 == 0 {
			t.Logf("outage SMS to %d phones", n)
		}
		return n >= len(meters)
	})

	// Power comes back; a process dies while the restored SMS go out.
	for _, m := range meters {
		publish(conc[m]+"/"+m+"/event", map[string]any{"meter": m, "ts": ts(30 * time.Second), "type": "power_on"})
	}
	waitFor(t, "restored SMS going out", 2*time.Minute, func() bool {
		return len(sentBy(t, dirs, "restored")) >= len(meters)/5
	})
	killed = "k1"
	if rulesHolder(t, db) == killed {
		killed = "k2"
	}
	t.Logf("SIGKILLing %s during sending, at %d restored SMS", killed, len(sentBy(t, dirs, "restored")))
	restart(killed)
	waitFor(t, "a restored SMS to every customer", 3*time.Minute, func() bool {
		return len(sentBy(t, dirs, "restored")) >= len(meters)
	})
	// Settled: no intent left to expand and no message queued or held by a
	// sender (a killed process's claims are taken back when their 15 s
	// lease lapses, and sent again: the crash window).
	settled := func() bool {
		var n int
		db.QueryRowContext(context.Background(), `SELECT (SELECT COUNT(*) FROM notify_intents WHERE state = 'pending') + (SELECT COALESCE(SUM(n), 0) FROM notify_intent_log) +
			(SELECT COUNT(*) FROM notify_messages WHERE status IN ('queued', 'held', 'sending'))`).Scan(&n)
		return n == 0
	}
	waitFor(t, "the outbox settled", 2*time.Minute, settled)
	time.Sleep(2 * time.Second) // let anything wrongly queued show up

	check := func(when string) (dupOutage, dupRestored int) {
		outage, restored := sentBy(t, dirs, "outage"), sentBy(t, dirs, "restored")
		for i := range meters {
			phone := stormPhone(i)
			if outage[phone] == 0 || restored[phone] == 0 {
				t.Errorf("%s: %s got %d outage and %d restored SMS: lost", when, phone, outage[phone], restored[phone])
			}
			dupOutage += max(outage[phone]-1, 0)
			dupRestored += max(restored[phone]-1, 0)
		}
		return dupOutage, dupRestored
	}
	dupO, dupR := check("after two SIGKILLs")
	t.Logf("lost 0; repeated: %d outage and %d restored SMS (messages a killed process was handing to its sender)", dupO, dupR)
	// A killed process can repeat at most what it had handed to its sender
	// and not yet recorded: its in-flight window, sms.workers (8) × 8.
	if dupO > 64 || dupR > 64 {
		t.Errorf("repeated %d outage and %d restored SMS, want at most 64 each (the in-flight window of the killed process)", dupO, dupR)
	}

	// Replay the meter topic from offset 0: the process running the rules
	// dies, its stored offsets are set back to 0, and the process that
	// takes over reads every event again. It sends nothing new.
	holder := rulesHolder(t, db)
	procs[holder].kill()
	var total int64
	db.QueryRowContext(context.Background(), `SELECT COALESCE(SUM(next_offset), 0) FROM cluster_offsets`).Scan(&total)
	if _, err := db.ExecContext(context.Background(), `UPDATE cluster_offsets SET next_offset = 0`); err != nil {
		t.Fatal(err)
	}
	before := len(sentBy(t, dirs, "outage")) + len(sentBy(t, dirs, "restored"))
	procs[holder] = env.spawn(t, holder)
	waitFor(t, "the replay of every record", 3*time.Minute, func() bool {
		var n int64
		db.QueryRowContext(context.Background(), `SELECT COALESCE(SUM(next_offset), 0) FROM cluster_offsets`).Scan(&n)
		return n >= total
	})
	consumed := total
	time.Sleep(3 * time.Second)
	waitFor(t, "the outbox settled after the replay", 2*time.Minute, settled)
	d2o, d2r := check("after the replay")
	if after := len(sentBy(t, dirs, "outage")) + len(sentBy(t, dirs, "restored")); after != before || d2o != dupO || d2r != dupR {
		t.Errorf("replaying the meter topic from 0 (%d records) sent more: %d phones before, %d after; repeats %d/%d before, %d/%d after",
			consumed, before, after, dupO, dupR, d2o, d2r)
	}
}

// startThree starts three instances named prefix1..prefix3 and waits until
// each is ready and one runs the rules. It returns the store they share,
// the processes by name and their data directories.
func (env *clusterEnv) startThree(t *testing.T, prefix string) (*store.DB, map[string]*process, []string) {
	t.Helper()
	db, err := store.Open(context.Background(), env.store, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	procs := map[string]*process{}
	var dirs []string
	for i := range 3 {
		name := fmt.Sprintf("%s%d", prefix, i+1)
		procs[name] = env.spawn(t, name)
		dirs = append(dirs, procs[name].dataDir)
	}
	for _, p := range procs {
		waitFor(t, p.name+" ready", 90*time.Second, p.ready)
	}
	waitFor(t, "a process running the rules", 30*time.Second, func() bool { return rulesHolder(t, db) != "" })
	return db, procs, dirs
}
