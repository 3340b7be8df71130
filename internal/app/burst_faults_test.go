//go:build faults

package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/faults"
	"github.com/gridbell/gridbell/internal/metrics"
)

// The storm of issue 20 on one process: burstCustomers customers (one meter
// each) in burstAreas areas. The first 30% of the areas report each meter's
// event in its own QoS 1 message, the next 30% by their concentrator's
// message; the rest stay lit. 60% of the customers go dark, then the power
// comes back in a burst of as many messages, published at burstRate while
// the outage SMS go out. GRIDBELL_BURST_CUSTOMERS (default 20,000) and
// GRIDBELL_BURST_RATE (default 7,300 messages/s) change the size,
// GRIDBELL_MQTT_MAX_INFLIGHT gridbell's window, GRIDBELL_BURST_CPUPROFILE
// names a file for a CPU profile of the 10 s from the power_on burst;
// `make bench-burst` runs it at 100,000.
func burstSize(t *testing.T) (customers, areas, rate int) {
	customers, rate = 20_000, 7_300
	if v := os.Getenv("GRIDBELL_BURST_CUSTOMERS"); v != "" {
		customers, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("GRIDBELL_BURST_RATE"); v != "" {
		rate, _ = strconv.Atoi(v)
	}
	return customers, customers / 50, rate
}

// burstBroker is Mosquitto as deploy.md says to set it for gridbell: its
// queue for a session holds a storm's burst, and its in-flight window is
// gridbell's. $SYS every second, for the dropped count.
const burstBroker = "max_queued_messages 200000\nmax_inflight_messages 1000\nsys_interval 1\n"

// burstFleet is the storm's fleet and its messages.
type burstFleet struct {
	n, areas, perArea int
}

func (f burstFleet) meter(k int) string        { return fmt.Sprintf("33%010d", k) }
func (f burstFleet) phone(k int) string        { return fmt.Sprintf("+86138%08d", k+1) }
func (f burstFleet) concentrator(a int) string { return fmt.Sprintf("C-%04d", a) }

func (f burstFleet) contacts(t *testing.T, dir string) string {
	var b bytes.Buffer
	b.WriteString("account,meter,concentrator,area,grid,manager,manager_phone,class,phone\n")
	for k := range f.n {
		a := k / f.perArea
		fmt.Fprintf(&b, "01%08d,%s,%s,TA-%04d,G%02d,mgr,13900000000,resident,138%08d\n", k, f.meter(k), f.concentrator(a), a, a%4, k+1)
	}
	path := filepath.Join(dir, "contacts.csv")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// burstMsg is one message of the burst, and the customers it concerns.
type burstMsg struct {
	topic     string
	payload   []byte
	customers []int
}

// messages returns the burst of typ at ts: a message per meter in the
// single-message areas, one per concentrator in the gasp areas.
func (f burstFleet) messages(prefix, typ string, ts time.Time) []burstMsg {
	var out []burstMsg
	single, gasp := f.areas*3/10, f.areas*3/10
	stamp := ts.UTC().Format(time.RFC3339)
	for a := range single + gasp {
		c := f.concentrator(a)
		if a < single {
			for k := a * f.perArea; k < (a+1)*f.perArea; k++ {
				m := f.meter(k)
				b, _ := json.Marshal(map[string]string{"meter": m, "ts": stamp, "type": typ})
				out = append(out, burstMsg{fmt.Sprintf("%s/%s/%s/event", prefix, c, m), b, []int{k}})
			}
			continue
		}
		b, _ := json.Marshal(map[string]string{"concentrator": c, "ts": stamp, "type": typ})
		ks := make([]int, 0, f.perArea)
		for k := a * f.perArea; k < (a+1)*f.perArea; k++ {
			ks = append(ks, k)
		}
		out = append(out, burstMsg{fmt.Sprintf("%s/%s/event", prefix, c), b, ks})
	}
	return out
}

// dark is the number of customers the burst concerns.
func (f burstFleet) dark() int { return f.areas * 6 / 10 * f.perArea }

// publishBurst publishes msgs at QoS 1 from 4 connections at about rate a
// second, and returns when each was published (the broker acknowledged
// it; by customer) and how long publishing took.
func publishBurst(t *testing.T, broker string, msgs []burstMsg, rate int, at []time.Time) time.Duration {
	t.Helper()
	const conns = 4
	var pubs []paho.Client
	for i := range conns {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("burst-pub-%d-%d", i, time.Now().UnixNano())).
			SetMaxResumePubInFlight(1000))
		if tok := c.Connect(); tok.Wait() && tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer c.Disconnect(100)
		pubs = append(pubs, c)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			var toks []paho.Token
			for j := i; j < len(msgs); j += conns {
				if due := t0.Add(time.Duration(j) * time.Second / time.Duration(rate)); time.Until(due) > 0 {
					time.Sleep(time.Until(due))
				}
				now := time.Now()
				for _, k := range msgs[j].customers {
					at[k] = now
				}
				toks = append(toks, pubs[i].Publish(msgs[j].topic, 1, false, msgs[j].payload))
			}
			for _, tok := range toks {
				if tok.Wait(); tok.Error() != nil {
					t.Errorf("publish: %v", tok.Error())
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(t0)
}

// droppedWatch follows Mosquitto's count of messages it dropped.
func droppedWatch(t *testing.T, broker string) (dropped func() int64) {
	t.Helper()
	var n atomic.Int64
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("burst-sys-%d", time.Now().UnixNano())))
	if tok := c.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	c.Subscribe("$SYS/broker/publish/messages/dropped", 0, func(_ paho.Client, m paho.Message) {
		v, _ := strconv.ParseInt(string(m.Payload()), 10, 64)
		n.Store(v)
	}).Wait()
	return func() int64 { time.Sleep(1500 * time.Millisecond); return n.Load() }
}

// outboxTail reads the outbox file as it grows and records when each
// customer's first SMS of each kind appeared.
type outboxTail struct {
	path string
	off  int64
	seen map[string]map[string]time.Time // kind → phone → first seen
	rest []byte
}

func (o *outboxTail) poll(t *testing.T) {
	f, err := os.Open(o.path)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(o.off, 0)
	now := time.Now()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		o.off += int64(len(line))
		if err != nil {
			o.off -= int64(len(line)) // a line still being written
			return
		}
		var l outboxLine
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		if o.seen[l.Kind] == nil {
			o.seen[l.Kind] = map[string]time.Time{}
		}
		if _, ok := o.seen[l.Kind][l.To]; !ok {
			o.seen[l.Kind][l.To] = now
		}
	}
}

// follow polls until kind reaches want customers or d passes.
func (o *outboxTail) follow(t *testing.T, kind string, want int, d time.Duration) {
	deadline := time.Now().Add(d)
	for o.poll(t); len(o.seen[kind]) < want && time.Now().Before(deadline); o.poll(t) {
		time.Sleep(20 * time.Millisecond)
	}
}

// latencies returns each customer's delay from at[k] to its kind SMS, and
// how many have none.
func (o *outboxTail) latencies(f burstFleet, kind string, at []time.Time, customers []int) (ds []time.Duration, missing int) {
	for _, k := range customers {
		s, ok := o.seen[kind][f.phone(k)]
		if !ok {
			missing++
			continue
		}
		ds = append(ds, s.Sub(at[k]))
	}
	slices.Sort(ds)
	return ds, missing
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))].Round(10 * time.Millisecond)
}

// takenRate follows gridbell_ingest_events_total{source="mqtt"} from base
// until it has risen by want (or d passes) and returns the messages/s
// taken since t0.
func takenRate(base float64, want int, t0 time.Time, d time.Duration) (rate float64, got int) {
	deadline := time.Now().Add(d)
	last, lastAt := 0, t0
	for time.Now().Before(deadline) {
		n := int(metrics.Default.Sum("gridbell_ingest_events_total") - base)
		if n > last {
			last, lastAt = n, time.Now()
		}
		if n >= want {
			break
		}
		if time.Since(lastAt) > 10*time.Second {
			break // nothing more is coming
		}
		time.Sleep(5 * time.Millisecond)
	}
	return float64(last) / lastAt.Sub(t0).Seconds(), last
}

// TestFaultBurst is issue 20's storm over MQTT (a private Mosquitto set as
// docs/deploy.md says, the outbox file as sender): the power_off burst,
// then while the outage SMS go out the power_on burst. Every dark customer
// gets its restored SMS: none lost (an outage SMS still unsent when the
// power returns is folded into it). It prints the
// messages/s gridbell took of the power_on burst beside a subscriber that
// discards everything on the same burst from the same broker settings,
// Mosquitto's dropped count, and gasp → outage SMS and power_on → restored
// SMS percentiles.
func TestFaultBurst(t *testing.T) {
	customers, areas, rate := burstSize(t)
	f := burstFleet{n: customers, areas: areas, perArea: customers / areas}
	dark := make([]int, 0, f.dark())
	for k := range f.areas * 6 / 10 * f.perArea {
		dark = append(dark, k)
	}

	// The discarding sink on the same burst, from a broker of its own.
	sinkBroker := faults.StartMosquittoConf(t, burstBroker)
	var sunk atomic.Int64
	var sunkAt atomic.Int64
	sink := paho.NewClient(paho.NewClientOptions().AddBroker(sinkBroker.URL()).SetClientID("burst-sink").SetCleanSession(false).
		SetDefaultPublishHandler(func(_ paho.Client, _ paho.Message) { sunk.Add(1); sunkAt.Store(time.Now().UnixNano()) }))
	if tok := sink.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	sink.Subscribe("ami/#", 1, nil).Wait()
	sinkDropped := droppedWatch(t, sinkBroker.URL())
	onMsgs := f.messages("ami", "power_on", time.Now())
	sinkAt := make([]time.Time, f.n)
	t0 := time.Now()
	publishBurst(t, sinkBroker.URL(), onMsgs, rate, sinkAt)
	deadline := time.Now().Add(time.Minute)
	for sunk.Load() < int64(len(onMsgs)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	sinkRate := float64(sunk.Load()) / time.Unix(0, sunkAt.Load()).Sub(t0).Seconds()
	sink.Disconnect(50)
	sinkDrops := sinkDropped()

	broker := faults.StartMosquittoConf(t, burstBroker)
	dir := t.TempDir()
	env := []string{
		"GRIDBELL_DATA_DIR=" + filepath.Join(dir, "data"),
		"GRIDBELL_CONTACTS_FILE=" + f.contacts(t, dir),
		"GRIDBELL_HTTP_LISTEN=" + freePort(t),
		"GRIDBELL_MQTT_BROKERS=" + broker.URL(),
		"GRIDBELL_MQTT_CLIENT_ID=gridbell-burst",
		"GRIDBELL_RULES_MOMENTARY=3s",
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
		"GRIDBELL_CONTACTS_REFRESH=0s",
	}
	if v := os.Getenv("GRIDBELL_MQTT_MAX_INFLIGHT"); v != "" {
		env = append(env, "GRIDBELL_MQTT_MAX_INFLIGHT="+v)
	}
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	startApp(t, cfg, zerolog.WarnLevel)
	dropped := droppedWatch(t, broker.URL())
	out := &outboxTail{path: filepath.Join(cfg.DataDir, "outbox.jsonl"), seen: map[string]map[string]time.Time{}}

	offAt := make([]time.Time, f.n)
	base := metrics.Default.Sum("gridbell_ingest_events_total")
	offMsgs := f.messages("ami", "power_off", time.Now())
	publishBurst(t, broker.URL(), offMsgs, rate, offAt)
	out.follow(t, "outage", 1, time.Minute)
	// The outage SMS are going out: the power comes back.
	onAt := make([]time.Time, f.n)
	base2 := metrics.Default.Sum("gridbell_ingest_events_total")
	if got := int(base2 - base); got < len(offMsgs) {
		t.Logf("power_off burst: %d of %d events taken before the power_on burst", got, len(offMsgs))
	}
	if path := os.Getenv("GRIDBELL_BURST_CPUPROFILE"); path != "" { // the power_on burst's
		pf, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(pf)
		time.AfterFunc(10*time.Second, func() { pprof.StopCPUProfile(); pf.Close() })
	}
	t1 := time.Now()
	pubTook := publishBurst(t, broker.URL(), f.messages("ami", "power_on", time.Now()), rate, onAt)
	takeRate, taken := takenRate(base2, len(onMsgs), t1, 2*time.Minute)
	extra := time.Duration(f.n/20_000) * time.Minute // the SMS of a larger storm take longer
	out.follow(t, "outage", len(dark), 2*time.Minute)
	out.follow(t, "restored", len(dark), 3*time.Minute+extra)
	drops := dropped()

	gasp, outMissing := out.latencies(f, "outage", offAt, dark)
	back, restMissing := out.latencies(f, "restored", onAt, dark)
	var tb bytes.Buffer
	fmt.Fprintf(&tb, "storm of %d customers in %d areas, %d dark; power_on burst of %d messages published in %s (%.0f/s)\n",
		f.n, f.areas, len(dark), len(onMsgs), pubTook.Round(10*time.Millisecond), float64(len(onMsgs))/pubTook.Seconds())
	fmt.Fprintf(&tb, "  discarding sink: %.0f messages/s taken, Mosquitto dropped %d\n", sinkRate, sinkDrops)
	fmt.Fprintf(&tb, "  gridbell:        %.0f messages/s taken (%d of %d) while the outage SMS went out (%.0f%% of the sink), Mosquitto dropped %d\n",
		takeRate, taken, len(onMsgs), 100*takeRate/sinkRate, drops)
	fmt.Fprintf(&tb, "  gasp → outage SMS:        p50 %s p95 %s max %s; %d of %d folded into the restored SMS (still unsent when the power returned)\n", pct(gasp, .5), pct(gasp, .95), pct(gasp, 1), outMissing, len(dark))
	fmt.Fprintf(&tb, "  power_on → restored SMS:  p50 %s p95 %s max %s; missing %d of %d\n", pct(back, .5), pct(back, .95), pct(back, 1), restMissing, len(dark))
	t.Log("\n" + tb.String())
	if restMissing != 0 {
		var which []string
		for _, k := range dark {
			if _, ok := out.seen["restored"][f.phone(k)]; !ok && len(which) < 10 {
				_, told := out.seen["outage"][f.phone(k)]
				which = append(which, fmt.Sprintf("%d (area TA-%04d, outage SMS seen %v)", k, k/f.perArea, told))
			}
		}
		t.Errorf("restored SMS missing for %d of %d dark customers, first: %v", restMissing, len(dark), which)
	}
	if drops != 0 {
		t.Errorf("Mosquitto dropped %d messages", drops)
	}
}
