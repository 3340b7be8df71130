package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/cluster"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// clusterEnv is what a distributed-mode test runs on: a kfake cluster,
// Mosquitto (shared subscriptions) and one PostgreSQL schema.
type clusterEnv struct {
	kafka    *kfake.Cluster
	store    store.Config
	prefix   string
	contacts string
	dir      string
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	needMosquitto(t, "127.0.0.1:1883")
	kc := newKafka(t)
	dir := t.TempDir()
	env := &clusterEnv{kafka: kc, store: storetest.Config(t, "postgres"), prefix: fmt.Sprintf("cl%d", time.Now().UnixNano()),
		contacts: filepath.Join(dir, "contacts.csv"), dir: dir}
	if err := os.WriteFile(env.contacts, []byte(contactsCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	return env
}

// clusterInstance is one in-process instance.
type clusterInstance struct {
	name, listen, outbox string
	app                  *app.App
	stop                 func() // graceful stop, waits for Run
}

// vars is the environment of instance name, serving HTTP on listen.
func (env *clusterEnv) vars(name, listen string) []string {
	return []string{
		"GRIDBELL_DATA_DIR=" + filepath.Join(env.dir, name),
		"GRIDBELL_CONTACTS_FILE=" + env.contacts,
		"GRIDBELL_HTTP_LISTEN=" + listen,
		"GRIDBELL_MQTT_BROKERS=tcp://127.0.0.1:1883",
		"GRIDBELL_MQTT_TOPIC_PREFIX=" + env.prefix,
		"GRIDBELL_MQTT_CLIENT_ID=" + env.prefix + "-" + name,
		"GRIDBELL_MQTT_SHARED_GROUP=" + env.prefix,
		"GRIDBELL_KAFKA_BROKERS=" + strings.Join(env.kafka.ListenAddrs(), ","),
		"GRIDBELL_KAFKA_GROUP=" + env.prefix,
		"GRIDBELL_CLUSTER_ENABLED=true",
		"GRIDBELL_CLUSTER_INSTANCE=" + name,
		"GRIDBELL_CLUSTER_METER_TOPIC=" + env.prefix + ".meter-events",
		"GRIDBELL_STORE_DRIVER=postgres",
		"GRIDBELL_STORE_DSN=" + env.store.DSN,
		"GRIDBELL_RULES_MOMENTARY=2s",
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
		"GRIDBELL_AUTH_TOKENS=admintok-0123456789:admin",
	}
}

func (env *clusterEnv) config(t *testing.T, name string) (*config.Config, string) {
	t.Helper()
	listen := freePort(t)
	cfg, err := config.Load("", env.vars(name, listen))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = env.store
	return cfg, listen
}

// startTogether builds the instances at the same moment (each migrates
// the store and imports the contacts) and starts them.
func (env *clusterEnv) startTogether(t *testing.T, names ...string) []*clusterInstance {
	t.Helper()
	type built struct {
		a   *app.App
		err error
	}
	cfgs := make([]*config.Config, len(names))
	listens := make([]string, len(names))
	for i, n := range names {
		cfgs[i], listens[i] = env.config(t, n)
	}
	res := make([]built, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].a, res[i].err = app.New(context.Background(), cfgs[i], env.logger(t, n))
		}()
	}
	wg.Wait()
	var out []*clusterInstance
	for i, n := range names {
		if res[i].err != nil {
			t.Fatalf("%s, started together with %d others on an empty database: %v", n, len(names)-1, res[i].err)
		}
		out = append(out, env.run(t, n, listens[i], cfgs[i], res[i].a))
	}
	return out
}

func (env *clusterEnv) logger(t *testing.T, name string) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("instance", name).Logger()
}

// start starts instance name in this process.
func (env *clusterEnv) start(t *testing.T, name string) *clusterInstance {
	t.Helper()
	cfg, listen := env.config(t, name)
	a, err := app.New(context.Background(), cfg, env.logger(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return env.run(t, name, listen, cfg, a)
}

func (env *clusterEnv) run(t *testing.T, name, listen string, cfg *config.Config, a *app.App) *clusterInstance {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	in := &clusterInstance{name: name, listen: listen, outbox: filepath.Join(cfg.DataDir, "outbox.jsonl"), app: a}
	in.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run() = %v", name, err)
		}
	}
	t.Cleanup(in.stop)
	return in
}

func (in *clusterInstance) get(t *testing.T, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+in.listen+path, nil)
	req.Header.Set("Authorization", "Bearer admintok-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// sent counts, over every instance's outbox, the SMS of kind to each phone.
func sent(t *testing.T, ins []*clusterInstance, kind string) map[string]int {
	t.Helper()
	var all []outboxLine
	for _, in := range ins {
		all = append(all, readOutbox(t, in.outbox)...)
	}
	return count(all, kind, "")
}

// TestClusterThreeInstances: three instances in distributed mode, built at
// the same moment on one empty PostgreSQL database (all become ready), with
// a kfake cluster and Mosquitto's shared subscription. Each customer gets exactly one outage and one restored SMS although the
// meter events are spread over the instances and the instance running the
// rules stops in between; a momentary blip whose two events reach
// different instances sends nothing; every instance's API answers alike;
// a confirmation made on an instance that does not run the rules takes
// effect.
func TestClusterThreeInstances(t *testing.T) {
	env := newClusterEnv(t)
	ins := env.startTogether(t, "i1", "i2", "i3") // on an empty database
	for _, in := range ins {
		waitFor(t, in.name+" ready", 60*time.Second, func() bool { return in.app.Ready() == nil })
	}
	leader := func() int {
		for i, in := range ins {
			if in != nil && in.app.RulesLeader() {
				return i
			}
		}
		return -1
	}
	waitFor(t, "one instance running the rules", 30*time.Second, func() bool { return leader() >= 0 })
	db, err := store.Open(context.Background(), env.store, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	live := func() int {
		n, err := cluster.LiveInstances(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := live(); n != 3 {
		t.Errorf("live instances = %d, want 3 (each shares the Twilio rate by it)", n)
	}

	publish := mqttPublisher(t, "tcp://127.0.0.1:1883", env.prefix)
	now := time.Now()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	publishReadings(publish, ts(-time.Minute))
	// A blip of one TA-2 meter: its power_off and power_on are spread over
	// the instances by the broker, and reach the rules in order.
	publish("C-2/330000000008/event", map[string]any{"meter": "330000000008", "ts": ts(-30 * time.Second), "type": "power_off"})
	publish("C-2/330000000008/event", map[string]any{"meter": "330000000008", "ts": ts(-29 * time.Second), "type": "power_on"})
	// TA-1's concentrator last gasp: an outage after the 2 s window.
	publish("C-1/event", map[string]any{"concentrator": "C-1", "ts": ts(0), "type": "power_off"})
	ta1 := []string{"+8613812345601", "+8613812345602", "+8613812345603"}
	waitFor(t, "outage SMS for TA-1", 60*time.Second, func() bool { return len(sent(t, ins, "outage")) >= len(ta1) })

	// The instance running the rules stops; another takes over.
	old := leader()
	ins[old].stop()
	gone := ins[old]
	ins[old] = nil
	if n := live(); n != 2 {
		t.Errorf("live instances after a stop = %d, want 2", n)
	}
	liveIns := slices.DeleteFunc(slices.Clone(ins), func(in *clusterInstance) bool { return in == nil })
	waitFor(t, "another instance running the rules", 45*time.Second, func() bool { return leader() >= 0 })

	// The OMS declares TA-2 out over Kafka; then everyone comes back.
	kcl, err := kgo.NewClient(kgo.SeedBrokers(env.kafka.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer kcl.Close()
	oms := func(status string, at time.Duration) *kgo.Record {
		v, _ := json.Marshal(map[string]any{"outage_id": "OMS-CL-1", "kind": "fault", "status": status,
			"areas": []string{"TA-2"}, "feeders": []string{}, "meters": []string{},
			"start": ts(time.Second), "etr": ts(2 * time.Hour), "cause": "test", "updated_at": ts(at)})
		return &kgo.Record{Topic: "oms.outages", Key: []byte("OMS-CL-1"), Value: v}
	}
	if err := kcl.ProduceSync(t.Context(), oms("started", 2*time.Second)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "outage SMS for TA-2", 60*time.Second, func() bool { return len(sent(t, append(liveIns, gone), "outage")) >= 6 })
	for i := 1; i <= 8; i++ {
		publish(fmt.Sprintf("%s/33000000000%d/event", fleetConcentrator(i), i), map[string]any{
			"meter": fmt.Sprintf("33000000000%d", i), "ts": ts(10 * time.Second), "type": "power_on"})
	}
	if err := kcl.ProduceSync(t.Context(), oms("restored", 20*time.Second)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(sent(t, append(liveIns, gone), "restored")) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for restored SMS: outage %v, restored %v", sent(t, append(liveIns, gone), "outage"), sent(t, append(liveIns, gone), "restored"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // let anything wrongly queued show up

	all := append(liveIns, gone)
	outage, restored := sent(t, all, "outage"), sent(t, all, "restored")
	for _, phone := range []string{"+8613812345601", "+8613812345602", "+8613812345603", "+8613812345606", "+8613812345607", "+8613812345608"} {
		if outage[phone] != 1 || restored[phone] != 1 {
			t.Errorf("%s got %d outage and %d restored SMS, want exactly 1 each", phone, outage[phone], restored[phone])
		}
	}
	if len(outage) != 6 || len(restored) != 6 {
		t.Errorf("outage SMS to %v and restored SMS to %v, want the same 6 phones (no blip SMS, none to the landline)", outage, restored)
	}

	// Every live instance lists the same outages with the same counts.
	type outageView struct {
		ID, Status string
		Counts     struct{ Affected, Notified, Restored, Dark int }
	}
	list := func(in *clusterInstance) string {
		var v struct{ Outages []outageView }
		if code := in.get(t, "/api/v1/outages", &v); code != 200 {
			t.Fatalf("%s: GET /api/v1/outages = %d", in.name, code)
		}
		slices.SortFunc(v.Outages, func(a, b outageView) int { return strings.Compare(a.ID, b.ID) })
		b, _ := json.Marshal(v.Outages)
		return string(b)
	}
	alike := func() bool {
		first := list(liveIns[0])
		for _, in := range liveIns[1:] {
			if list(in) != first {
				return false
			}
		}
		return strings.Contains(first, "OMS-CL-1")
	}
	for deadline := time.Now().Add(20 * time.Second); !alike(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the instances' APIs differ:\n%s: %s\n%s: %s", liveIns[0].name, list(liveIns[0]), liveIns[1].name, list(liveIns[1]))
		}
	}

	// A confirmation posted to an instance that does not run the rules.
	follower := liveIns[0]
	if follower.app.RulesLeader() {
		follower = liveIns[1]
	}
	var ids []outageView
	var lv struct{ Outages []outageView }
	follower.get(t, "/api/v1/outages", &lv)
	ids = lv.Outages
	var target string
	for _, o := range ids {
		if o.ID != "OMS-CL-1" && o.Status != "confirmed" {
			target = o.ID
		}
	}
	if target == "" {
		t.Fatalf("no AMI outage to confirm among %+v", ids)
	}
	req, _ := http.NewRequest("POST", "http://"+follower.listen+"/api/v1/outages/"+target+"/confirm", strings.NewReader(`{"reason":""}`))
	req.Header.Set("Authorization", "Bearer admintok-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("confirm on a follower = %d, want 200", resp.StatusCode)
	}
	for _, in := range liveIns {
		waitFor(t, in.name+" sees the confirmation", 20*time.Second, func() bool {
			var o struct {
				ConfirmedBy string `json:"confirmed_by"`
			}
			in.get(t, "/api/v1/outages/"+target, &o)
			return o.ConfirmedBy != ""
		})
	}
	// Copies followed every commit, and the successor took over, without
	// loading the rules' whole state again.
	for _, in := range liveIns {
		if n := in.app.Rules.FullLoads(); n != 1 {
			t.Errorf("%s loaded the rules' whole state %d times, want once (at start)", in.name, n)
		}
	}
}

// TestModesRefuseEachOther: a single-process gridbell does not start on a
// store where instances in distributed mode run, nor the other way round:
// both would run the rules and send every SMS twice.
func TestModesRefuseEachOther(t *testing.T) {
	env := newClusterEnv(t)
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	in := env.start(t, "m1")
	waitFor(t, "m1 ready", 60*time.Second, func() bool { return in.app.Ready() == nil })
	single, err := app.New(ctx, instanceConfig(t, env.store), log)
	if err == nil {
		single.Run(canceled())
		t.Fatal("a single-process instance started beside a distributed-mode one")
	}
	if !strings.Contains(err.Error(), "instances in distributed mode run on this store") {
		t.Errorf("single-process refusal = %q, want it to name the distributed-mode instances", err)
	}
	in.stop()

	single, err = app.New(ctx, instanceConfig(t, env.store), log)
	if err != nil {
		t.Fatalf("single-process after the cluster stopped: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- single.Run(runCtx) }()
	defer func() { stop(); <-done }()
	cfg, _ := env.config(t, "m2")
	clustered, err := app.New(ctx, cfg, log)
	if err == nil {
		clustered.Run(canceled())
		t.Fatal("a distributed-mode instance started beside a single-process one")
	}
	if !strings.Contains(err.Error(), "a single-process gridbell runs on this store") {
		t.Errorf("distributed-mode refusal = %q, want it to name the single-process instance", err)
	}
}
