//go:build faults

package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/faults"
	"github.com/gridbell/gridbell/internal/store"
)

// The fault fleet: faultAreas transformer areas of faultPerArea customers,
// one meter each, every phone a valid mobile (13800000000 counts as a
// placeholder, so numbering starts at 1).
const (
	faultAreas   = 20
	faultPerArea = 30
	faultN       = faultAreas * faultPerArea
)

func faultContacts(t *testing.T, dir string) string {
	var b bytes.Buffer
	b.WriteString("account,meter,concentrator,area,grid,manager,manager_phone,class,phone\n")
	for k := range faultN {
		a := k / faultPerArea
		fmt.Fprintf(&b, "01%08d,33%010d,C-%03d,TA-%03d,G%02d,mgr,13900000000,resident,138%08d\n", k, k, a, a, a%4, k+1)
	}
	path := filepath.Join(dir, "contacts.csv")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// faultRun is the service under a fault, and the broker it reads.
type faultRun struct {
	t      *testing.T
	app    *app.App
	broker *faults.Mosquitto
	outbox string
	pub    paho.Client
	prefix string
	http   string // the API's address
}

// faultEnv is the service's configuration for the fault fleet.
func faultEnv(t *testing.T, dir, dataDir, broker, httpAddr string) []string {
	return []string{
		"GRIDBELL_DATA_DIR=" + dataDir,
		"GRIDBELL_CONTACTS_FILE=" + faultContacts(t, dir),
		"GRIDBELL_HTTP_LISTEN=" + httpAddr,
		"GRIDBELL_MQTT_BROKERS=" + broker,
		"GRIDBELL_MQTT_CLIENT_ID=gridbell-fault",
		"GRIDBELL_RULES_MOMENTARY=2s",
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
		"GRIDBELL_CONTACTS_REFRESH=0s",
	}
}

// faultPublisher connects the test's MQTT publisher to broker.
func faultPublisher(t *testing.T, broker string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID("fault-pub").SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second)
	pub := paho.NewClient(opts)
	if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { pub.Disconnect(100) })
	return pub
}

// startFaultRun starts the service in this process on st, with data_dir
// dataDir (empty: a temporary one) and extra configuration variables.
func startFaultRun(t *testing.T, st store.Config, dataDir string, extra ...string) *faultRun {
	t.Helper()
	broker := faults.StartMosquitto(t)
	dir := t.TempDir()
	if dataDir == "" {
		dataDir = filepath.Join(dir, "data")
	}
	httpAddr := freePort(t)
	env := append(faultEnv(t, dir, dataDir, broker.URL(), httpAddr), extra...)
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = st
	a := startApp(t, cfg, zerolog.WarnLevel)
	pub := faultPublisher(t, broker.URL())
	return &faultRun{t: t, app: a, broker: broker, outbox: filepath.Join(cfg.DataDir, "outbox.jsonl"), pub: pub, prefix: "ami", http: httpAddr}
}

// publish sends one message at QoS 1, again until the broker takes it (a
// broker being restarted refuses it for a moment).
func (r *faultRun) publish(topic string, v any) {
	b, _ := json.Marshal(v)
	deadline := time.Now().Add(time.Minute)
	for {
		tok := r.pub.Publish(r.prefix+"/"+topic, 1, false, b)
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Errorf("cannot publish %s: %v", topic, tok.Error())
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// burst publishes one meter event of typ for every meter, at ts, and calls
// fault (in its own goroutine) once a third of them are out.
func (r *faultRun) burst(typ string, ts time.Time, fault func()) {
	var wg sync.WaitGroup
	for k := range faultN {
		if k == faultN/3 && fault != nil {
			wg.Go(fault)
		}
		m := fmt.Sprintf("33%010d", k)
		r.publish(fmt.Sprintf("C-%03d/%s/event", k/faultPerArea, m), map[string]any{"meter": m, "ts": ts.Format(time.RFC3339), "type": typ})
	}
	wg.Wait()
}

// waitSMS waits until every customer has a kind SMS, or a minute passes.
func (r *faultRun) waitSMS(kind string) {
	deadline := time.Now().Add(20 * time.Second)
	for len(count(readOutbox(r.t, r.outbox), kind, "")) < faultN && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
}

// readyAgain returns how long after now the service answers ready, and
// fails the test past 30 s.
func (r *faultRun) readyAgain() time.Duration {
	t0 := time.Now()
	for r.app.Ready() != nil {
		if time.Since(t0) > 30*time.Second {
			r.t.Errorf("not ready 30 s after the fault cleared: %v", r.app.Ready())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(t0)
}

// verdict counts lost and duplicated outage and restored SMS.
func (r *faultRun) verdict() {
	smsVerdict(r.t, r.outbox, 0)
}

// smsVerdict counts lost and duplicated outage and restored SMS in the
// outbox file: none may be lost, and at most maxDup of each kind repeated.
func smsVerdict(t *testing.T, outbox string, maxDup int) (dups map[string]int) {
	t.Helper()
	time.Sleep(2 * time.Second) // anything wrongly queued shows up
	lines := readOutbox(t, outbox)
	dups = map[string]int{}
	for _, kind := range []string{"outage", "restored"} {
		got := count(lines, kind, "")
		lost, dup := 0, 0
		for k := range faultN {
			switch c := got[fmt.Sprintf("+86138%08d", k+1)]; {
			case c == 0:
				lost++
				t.Logf("no %s SMS to customer %d (area TA-%03d)", kind, k, k/faultPerArea)
			case c > 1:
				dup += c - 1
			}
		}
		dups[kind] = dup
		t.Logf("%s SMS: lost %d, duplicated %d of %d", kind, lost, dup, faultN)
		if lost != 0 || dup > maxDup {
			t.Errorf("%s SMS: lost %d, duplicated %d; want 0 lost, at most %d duplicated", kind, lost, dup, maxDup)
		}
	}
	return dups
}

// scenario runs an outage of the whole fleet and its restoration, with
// fault injected during the power_off burst, while the outage SMS are
// sent, and during the power_on burst.
func (r *faultRun) scenario(fault func(phase string)) {
	now := time.Now()
	r.burst("power_off", now, func() { fault("power_off burst") })
	deadline := time.Now().Add(30 * time.Second)
	for len(readOutbox(r.t, r.outbox)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	fault("sending")
	r.waitSMS("outage")
	r.burst("power_on", time.Now(), func() { fault("power_on burst") })
	r.waitSMS("restored")
	r.verdict()
}

// TestFaultPostgresRestart stops a private PostgreSQL for 3 s (fast and
// immediate shutdown) during the power_off burst, while SMS are sent and
// during the power_on burst. /readyz must say not ready while it is down.
func TestFaultPostgresRestart(t *testing.T) {
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			pg := faults.StartPostgres(t)
			r := startFaultRun(t, store.Config{Driver: "postgres", DSN: pg.DSN()}, "")
			r.scenario(func(phase string) {
				pg.Stop(mode)
				time.Sleep(3 * time.Second)
				notReady := r.app.Ready()
				pg.Start()
				t.Logf("%s: postgres down 3 s, readyz said %q; ready again %s after it came back", phase, notReady, r.readyAgain())
				if notReady == nil {
					t.Errorf("%s: ready while PostgreSQL was down", phase)
				}
			})
		})
	}
}

// TestFaultMosquittoRestart restarts the MQTT broker (persistence on) in
// the middle of both bursts and while SMS are sent.
func TestFaultMosquittoRestart(t *testing.T) {
	r := startFaultRun(t, store.Config{Driver: "sqlite"}, "")
	r.scenario(func(phase string) {
		r.broker.Stop()
		time.Sleep(time.Second)
		r.broker.Start()
		t.Logf("%s: mosquitto restarted; ready again %s after", phase, r.readyAgain())
	})
}

// TestFaultDiskFull puts data_dir (SQLite, the outbox file) on a small
// tmpfs and fills it for 3 s during the power_off burst, while SMS are
// sent and during the power_on burst. /readyz must say the disk is full;
// the rules and the outbox resume by themselves once space returns.
func TestFaultDiskFull(t *testing.T) {
	disk := faults.SmallDisk(t, 64<<20)
	r := startFaultRun(t, store.Config{Driver: "sqlite"}, filepath.Join(disk, "data"))
	r.scenario(func(phase string) {
		free := faults.Fill(t, disk)
		time.Sleep(3 * time.Second)
		notReady := r.app.Ready()
		free()
		t.Logf("%s: disk full for 3 s, readyz said %q; ready again %s after space returned", phase, notReady, r.readyAgain())
		if notReady == nil {
			t.Errorf("%s: ready while the disk was full", phase)
		}
	})
}
