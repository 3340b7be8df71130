//go:build faults

package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// outagesOf is process p's GET /api/v1/outages: id, status and counts of
// each outage, sorted, as one string. A failed request names p, so that
// two processes failing alike never agree.
func outagesOf(t *testing.T, p *process) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.listen+"/api/v1/outages", nil)
	req.Header.Set("Authorization", "Bearer admintok-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return p.name + ": " + err.Error()
	}
	defer resp.Body.Close()
	var v struct {
		Outages []struct {
			ID, Status string
			Counts     struct{ Affected, Restored, Dark int }
		}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%s: %s", p.name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return p.name + ": " + err.Error()
	}
	var lines []string
	for _, o := range v.Outages {
		lines = append(lines, fmt.Sprintf("%s %s %d/%d/%d", o.ID, o.Status, o.Counts.Affected, o.Counts.Restored, o.Counts.Dark))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestClusterDeadSessionAdopted: three gridbell processes on Mosquitto's
// $share; the one running the rules is SIGKILLed in the middle of a storm's
// power_off burst and never restarted. The broker keeps queueing a third of
// the messages to its persistent session; a survivor adopts that session
// once the dead instance's lease lapses (drains it, then discards it). Every
// customer gets an outage SMS, and a restored SMS soon after the power_on
// (the dead session's share is not held back), and the two survivors' APIs
// agree.
func TestClusterDeadSessionAdopted(t *testing.T) {
	env := newClusterEnv(t)
	const areas, perArea = 30, 20
	meters, conc := stormFleet(t, env.contacts, areas, perArea)
	db, procs, dirs := env.startThree(t, "d")

	publish := mqttPublisher(t, "tcp://127.0.0.1:1883", env.prefix)
	now := time.Now()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	var dead string
	for i, m := range meters {
		publish(conc[m]+"/"+m+"/event", map[string]any{"meter": m, "ts": ts(0), "type": "power_off"})
		if i == len(meters)/2 {
			dead = rulesHolder(t, db)
			procs[dead].kill()
			t.Logf("SIGKILLed %s, which ran the rules, after %d power_off events; it stays dead", dead, i+1)
		}
	}
	var live []*process
	for name, p := range procs {
		if name != dead {
			live = append(live, p)
		}
	}
	waitFor(t, "an outage SMS to every customer", 3*time.Minute, func() bool { return len(sentBy(t, dirs, "outage")) >= len(meters) })

	for _, m := range meters {
		publish(conc[m]+"/"+m+"/event", map[string]any{"meter": m, "ts": ts(30 * time.Second), "type": "power_on"})
	}
	on := time.Now()
	// The promise is 30 s; without adoption a third of the power_on wait
	// in the dead session for good. The bound here leaves room for a
	// loaded machine; the time taken is logged.
	deadline := on.Add(90 * time.Second)
	for len(sentBy(t, dirs, "restored")) < len(meters) {
		if time.Now().After(deadline) {
			t.Fatalf("restored SMS to %d of %d customers %s after the power_on", len(sentBy(t, dirs, "restored")), len(meters), time.Since(on).Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("every restored SMS out %.1f s after the power_on was published", time.Since(on).Seconds())
	outage, restored := sentBy(t, dirs, "outage"), sentBy(t, dirs, "restored")
	dup := 0
	for i := range meters {
		p := stormPhone(i)
		if outage[p] == 0 || restored[p] == 0 {
			t.Errorf("%s got %d outage and %d restored SMS", p, outage[p], restored[p])
		}
		dup += max(outage[p]-1, 0) + max(restored[p]-1, 0)
	}
	t.Logf("repeated SMS: %d (a killed process's in-flight window)", dup)
	if dup > 64 {
		t.Errorf("%d SMS repeated, want at most the killed process's in-flight window (64)", dup)
	}
	agree := func() bool {
		a := outagesOf(t, live[0])
		return a != "" && a == outagesOf(t, live[1])
	}
	for end := time.Now().Add(20 * time.Second); !agree(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the survivors' outages differ:\n%s:\n%s\n%s:\n%s", live[0].name, outagesOf(t, live[0]), live[1].name, outagesOf(t, live[1]))
		}
	}
	// The adopter drains until the session is quiet, then discards it.
	waitFor(t, "the dead instance's session adopted and discarded", time.Minute, func() bool {
		var left int
		db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM cluster_mqtt_sessions WHERE instance = $1`, dead).Scan(&left)
		return left == 0
	})
}
