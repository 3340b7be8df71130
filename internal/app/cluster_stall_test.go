//go:build faults

package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify/twiliotest"
)

const (
	stallSID   = "AC0123456789abcdef0123456789abcdef"
	stallToken = "0123456789abcdef0123456789abcdef"
)

// stallCluster is three gridbell processes in distributed mode sending
// through a Twilio-shaped server that answers in 300 ms, over a fleet of
// areas × perArea customers.
type stallCluster struct {
	env    *clusterEnv
	srv    *twiliotest.Server
	db     *store.DB
	procs  map[string]*process
	meters []string
	conc   map[string]string
}

func newStallCluster(t *testing.T, areas, perArea int) *stallCluster {
	t.Helper()
	env := newClusterEnv(t)
	srv := twiliotest.New(stallSID, stallToken)
	t.Cleanup(srv.Close)
	srv.SetLatency(300 * time.Millisecond)
	meters, conc := stormFleet(t, env.contacts, areas, perArea)
	db, err := store.Open(context.Background(), env.store, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &stallCluster{env: env, srv: srv, db: db, procs: map[string]*process{}, meters: meters, conc: conc}
}

// spawn starts instance name sending through the Twilio-shaped server.
func (c *stallCluster) spawn(t *testing.T, name string, extra ...string) {
	t.Helper()
	c.procs[name] = c.env.spawnWith(t, name, append([]string{
		"GRIDBELL_SMS_SENDER=twilio",
		"GRIDBELL_SMS_TWILIO_ACCOUNT_SID=" + stallSID,
		"GRIDBELL_SMS_TWILIO_AUTH_TOKEN=" + stallToken,
		"GRIDBELL_SMS_TWILIO_FROM=+15005550006",
		"GRIDBELL_SMS_TWILIO_API_BASE=" + c.srv.URL,
		"GRIDBELL_SMS_TWILIO_RATE=100",
	}, extra...)...)
	waitFor(t, name+" ready", 90*time.Second, c.procs[name].ready)
}

// powerOff publishes a power_off of every meter.
func (c *stallCluster) powerOff(t *testing.T) {
	publish := mqttPublisher(t, "tcp://127.0.0.1:1883", c.env.prefix)
	ts := time.Now().Format(time.RFC3339Nano)
	for _, m := range c.meters {
		publish(c.conc[m]+"/"+m+"/event", map[string]any{"meter": m, "ts": ts, "type": "power_off"})
	}
}

// claims counts the messages instance name holds claimed.
func (c *stallCluster) claims(name string) int {
	var n int
	c.db.QueryRow(`SELECT COUNT(*) FROM notify_messages WHERE status = 'sending' AND claimed_by = $1`, name).Scan(&n)
	return n
}

// outageSent is what process p counts in gridbell_sms_total{kind="outage",
// status="sent"}: the outage SMS it handed to the provider.
func outageSent(t *testing.T, p *process) float64 {
	return processMetric(t, p, "gridbell_sms_total", map[string]string{"kind": "outage", "status": "sent"})
}

// processMetric sums what process p's /metrics shows of the series of name
// whose labels include want.
func processMetric(t *testing.T, p *process, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var n float64
series:
	for _, m := range parseMetrics(t, body)[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue series
			}
		}
		n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return n
}

// check waits until every customer has an outage SMS and the outbox is
// empty, then counts what the provider received per phone, kind and
// reference: none may be lost or doubled, and every row must name the
// message the provider holds for its phone.
func (c *stallCluster) check(t *testing.T) {
	t.Helper()
	type key struct{ to, body string }
	received := func() map[key]int {
		seen := map[key]int{}
		for _, m := range c.srv.Received() {
			seen[key{m.To, m.Body}]++
		}
		return seen
	}
	waitFor(t, "an outage SMS to every customer", 3*time.Minute, func() bool { return len(received()) >= len(c.meters) })
	waitFor(t, "the outbox settled", 2*time.Minute, func() bool {
		var n int
		c.db.QueryRow(`SELECT (SELECT COUNT(*) FROM notify_intents WHERE state = 'pending') + (SELECT COALESCE(SUM(n), 0) FROM notify_intent_log) +
			(SELECT COUNT(*) FROM notify_messages WHERE status IN ('queued', 'held', 'sending'))`).Scan(&n)
		return n == 0
	})
	time.Sleep(2 * time.Second) // let anything wrongly queued show up
	seen := received()
	sids := map[string]string{}
	for _, m := range c.srv.Received() {
		sids[m.SID] = m.To
	}
	rows, err := c.db.Query(`SELECT phone, kind, ref, body, status, provider_id FROM notify_messages`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	lost, doubled, over, msgs := 0, 0, 0, 0
	var twice []string
	for rows.Next() {
		var phone, kind, ref, body, status, sid string
		if err := rows.Scan(&phone, &kind, &ref, &body, &status, &sid); err != nil {
			t.Fatal(err)
		}
		msgs++
		switch n := seen[key{phone, body}]; {
		case n == 0:
			lost++
		case n > 1:
			doubled += n - 1
			twice = append(twice, fmt.Sprintf("%s %s %s ×%d", phone, kind, ref, n))
		}
		if status != "sent" && status != "delivered" || sids[sid] != phone {
			over++
		}
	}
	t.Logf("%d messages to %d customers: lost %d, doubled %d; %d rows not naming the provider's message; %d lookups at the provider",
		msgs, len(c.meters), lost, doubled, over, c.srv.Lookups())
	if len(twice) > 0 {
		t.Logf("doubled, for example: %v", twice[:min(len(twice), 5)])
	}
	if msgs != len(c.meters) || lost != 0 || doubled != 0 || over != 0 {
		t.Errorf("%d messages for %d customers: lost %d, doubled %d, %d rows recorded over another send; want one each, none lost, doubled or overwritten",
			msgs, len(c.meters), lost, doubled, over)
	}
}

// TestClusterSIGSTOP: three gridbell processes send a storm's outage SMS
// (1,000 customers) through a Twilio-shaped server answering in 300 ms. An
// instance not running the rules is frozen (SIGSTOP) for 25 s while it
// holds claimed messages, past every lease, then resumed. Its claims are
// taken over and sent by the others; it sends none of them again and
// records nothing over them.
func TestClusterSIGSTOP(t *testing.T) {
	c := newStallCluster(t, 20, 50)
	for _, name := range []string{"s1", "s2", "s3"} {
		c.spawn(t, name)
	}
	waitFor(t, "a process running the rules", 30*time.Second, func() bool { return rulesHolder(t, c.db) != "" })
	stalled := "s1"
	if rulesHolder(t, c.db) == stalled {
		stalled = "s2"
	}
	c.powerOff(t)
	waitFor(t, "SMS going out, some claimed by "+stalled, 2*time.Minute, func() bool {
		return c.srv.Count() >= 100 && c.claims(stalled) >= 16
	})
	p := c.procs[stalled]
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGCONT) })
	t.Logf("SIGSTOP of %s holding %d claims, %d SMS received by the provider", stalled, c.claims(stalled), c.srv.Count())
	time.Sleep(25 * time.Second)
	t.Logf("after 25 s: %d SMS received, %d claims still %s's", c.srv.Count(), c.claims(stalled), stalled)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.check(t)
}

// TestClusterClockAhead: the same storm, with an instance not running the
// rules whose clock runs 30 s ahead: it takes none of the others' live
// claims as lapsed, and nothing goes twice.
func TestClusterClockAhead(t *testing.T) {
	c := newStallCluster(t, 20, 50)
	c.spawn(t, "s1")
	c.spawn(t, "s2")
	waitFor(t, "a process running the rules", 30*time.Second, func() bool { return rulesHolder(t, c.db) != "" })
	c.spawn(t, "s3", clock.OffsetEnv+"=30s")
	c.powerOff(t)
	c.check(t)
	// Unless the instance ahead sent part of the storm, it had no claim
	// of the others' beside its own to misjudge.
	if n := outageSent(t, c.procs["s3"]); n == 0 {
		t.Error("the instance whose clock runs ahead sent no outage SMS: the test proves nothing")
	} else {
		t.Logf("the instance ahead sent %.0f of %d outage SMS", n, len(c.meters))
	}
	// Nobody stopped: a lookup means a live claim was taken as lapsed
	// (147 before leases were judged on the store's clock).
	if n := c.srv.Lookups(); n != 0 {
		t.Errorf("%d lookups at the provider: live claims were taken over as lapsed", n)
	}
}

// TestClusterRulesHolderSIGSTOP: the same storm, with the instance running
// the rules frozen (SIGSTOP) for 25 s right after the storm's power_off
// were published, past its 15 s lease, then resumed. Within 30 s of the
// resume another instance runs the rules; the resumed one applies no more
// input (its commits are fenced) and, without exiting, is a ready copy
// again (one demotion), its MQTT session recorded for the others should it
// die later; every customer gets one outage SMS. A holder frozen inside its
// commit holds the lease row (the fence's FOR SHARE) only until PostgreSQL
// ends the idle transaction (5 s), so the takeover need not wait for the
// resume.
func TestClusterRulesHolderSIGSTOP(t *testing.T) {
	c := newStallCluster(t, 20, 50)
	for _, name := range []string{"s1", "s2", "s3"} {
		c.spawn(t, name)
	}
	waitFor(t, "a process running the rules", 30*time.Second, func() bool { return rulesHolder(t, c.db) != "" })
	stalled := rulesHolder(t, c.db)
	c.powerOff(t)
	p := c.procs[stalled]
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGCONT) })
	t.Logf("SIGSTOP of %s, which ran the rules, after the power_off; %d SMS received by the provider", stalled, c.srv.Count())
	time.Sleep(25 * time.Second)
	t.Logf("after 25 s frozen: the rules lease names %q, %d SMS received", rulesHolder(t, c.db), c.srv.Count())
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	waitFor(t, "another instance running the rules", 30*time.Second, func() bool {
		h := rulesHolder(t, c.db)
		return h != "" && h != stalled
	})
	t.Logf("%s runs the rules %.1f s after the resume", rulesHolder(t, c.db), time.Since(resumed).Seconds())
	waitFor(t, stalled+" a copy again (its lease lost)", 60*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited after losing the rules lease; want it a copy again", stalled)
		default:
		}
		return processMetric(t, p, "gridbell_cluster_rules_demotions_total", nil) == 1 &&
			processMetric(t, p, "gridbell_cluster_rules_leader", nil) == 0 && p.ready()
	})
	waitFor(t, stalled+"'s mqtt session recorded again", 30*time.Second, func() bool {
		var n int
		c.db.QueryRow(`SELECT COUNT(*) FROM cluster_mqtt_sessions WHERE instance = $1`, stalled).Scan(&n)
		return n == 1
	})
	c.check(t)
}
