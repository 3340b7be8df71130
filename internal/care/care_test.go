package care

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// world is a small fleet (testdata/fleet.csv) with the real registry,
// notify outbox (the outbox file), rules engine and care, on one store.
type world struct {
	t      *testing.T
	ctx    context.Context
	db     *store.DB
	clk    *clock.Fake
	reg    *contacts.Registry
	outbox *notify.Outbox
	file   string
	rules  *rules.Engine
	care   *Care
	step   bool // step care after every batch, as Run does; else catch up once
}

func newWorld(t *testing.T, driver string, step bool) *world {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := &world{t: t, ctx: ctx, db: storetest.Open(t, driver), clk: clock.NewFake(t0), step: step}
	log := zerolog.Nop()
	var err error
	if w.reg, err = contacts.Open(ctx, w.db, log); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/fleet.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rejects strings.Builder
	if sum, err := w.reg.Import(ctx, f, &rejects); err != nil || sum.Rejected > 0 {
		t.Fatalf("import: %v %s", err, rejects.String())
	}
	w.file = filepath.Join(t.TempDir(), "outbox.jsonl")
	cfg := notify.Config{OutboxFile: w.file}
	cfg.Defaults()
	sender, err := notify.NewSender(cfg, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	if w.outbox, err = notify.NewOutbox(cfg, notify.QuietHours{}, w.db, w.reg, sender, w.clk, log); err != nil {
		t.Fatal(err)
	}
	if w.rules, err = rules.New(rules.Config{Tick: time.Hour}, w.db, w.reg, w.outbox, w.clk, log); err != nil {
		t.Fatal(err)
	}
	if w.care, err = New(ctx, Config{}, w.db, w.reg, w.outbox, w.outbox, w.clk, log); err != nil {
		t.Fatal(err)
	}
	w.outbox.SetVarsHook(w.care.OutageVars)
	done := make(chan error, 2)
	go func() { done <- w.rules.Run(ctx) }()
	go func() { done <- w.outbox.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	return w
}

// at sets the clock to t0+d and applies evs.
func (w *world) at(d time.Duration, evs ...event.Event) {
	w.t.Helper()
	w.clk.Set(t0.Add(d))
	if len(evs) > 0 {
		if err := w.rules.Handle(w.ctx, evs); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := w.rules.Tick(w.ctx); err != nil {
		w.t.Fatal(err)
	}
	if w.step {
		w.catchUp()
	}
}

func (w *world) catchUp() {
	w.t.Helper()
	if _, err := w.care.Step(w.ctx); err != nil {
		w.t.Fatal(err)
	}
}

func meterEvs(typ event.MeterEventType, d time.Duration, ids ...string) []event.Event {
	var evs []event.Event
	for _, id := range ids {
		evs = append(evs, event.Event{Meter: &event.MeterEvent{Meter: id, Type: typ, TS: t0.Add(d)}})
	}
	return evs
}

func oms(id, kind, status string, start, d time.Duration, areas ...string) event.Event {
	st := t0.Add(start)
	return event.Event{Outage: &event.OMSOutage{OutageID: id, Kind: kind, Status: status, Areas: areas, Start: &st, UpdatedAt: t0.Add(d)}}
}

// fleetDay is the golden scenario, hand-computed in TestReliabilityGolden.
func (w *world) fleetDay() {
	h := time.Hour
	// A planned outage of TA-03 (G2), 120 minutes, no meter evidence.
	w.at(h, oms("P1", event.OutagePlanned, event.StatusStarted, h, h, "TA-03"))
	w.at(3*h, oms("P1", event.OutagePlanned, "restored", h, 3*h, "TA-03"))
	w.at(3*h, meterEvs(event.PowerOn, 3*h, "M0301", "M0302", "M0303", "M0304")...) // verified back
	// A blip of M0101: dark past the rules' 60 s, back within 5 min.
	w.at(5*h, meterEvs(event.PowerOff, 5*h, "M0101")...)
	w.at(5*h + 61*time.Second)
	w.at(5*h+2*time.Minute, meterEvs(event.PowerOn, 5*h+2*time.Minute, "M0101")...)
	// TA-02 dark; three meters back after 30 min, the fourth after 60.
	w.at(10*h, meterEvs(event.PowerOff, 10*h, "M0201", "M0202", "M0203", "M0204")...)
	w.at(10*h + 61*time.Second)
	w.at(10*h+30*time.Minute, meterEvs(event.PowerOn, 10*h+30*time.Minute, "M0201", "M0202", "M0203")...)
	w.at(11*h, meterEvs(event.PowerOn, 11*h, "M0204")...)
	// An OMS fault across grids (TA-01 in G1, TA-03 in G2), 60 minutes,
	// no meter evidence.
	w.at(20*h, oms("F9", event.OutageFault, event.StatusStarted, 20*h, 20*h, "TA-01", "TA-03"))
	w.at(21*h, oms("F9", event.OutageFault, "restored", 20*h, 21*h, "TA-01", "TA-03"))
	w.at(21*h, meterEvs(event.PowerOn, 21*h, "M0101", "M0102", "M0103", "M0104", "M0301", "M0302", "M0303", "M0304")...)
	w.catchUp()
}

// TestReliabilityGolden: the indices of a small fleet over a day, computed
// by hand (docs/interfaces.md §9), with the projection stepping as it goes
// and catching up once at the end, on both stores.
//
//	G1 (8 customers): TA-01 4 × 60 min (F9) + TA-02 3 × 30 + 1 × 60 (nested)
//	  = 8 interruptions, 390 customer-minutes, 1 momentary (M0101, 2 min)
//	  SAIFI 8/8 = 1, SAIDI 390/8 = 48.75, CAIDI 48.75, MAIFI 1/8 = 0.125
//	G2 (4 customers): TA-03 4 × 120 (planned P1) + 4 × 60 (F9)
//	  = 8 interruptions, 720 customer-minutes: SAIFI 2, SAIDI 180, CAIDI 90
//	  without planned: 4, 240: SAIFI 1, SAIDI 60, CAIDI 60
func TestReliabilityGolden(t *testing.T) {
	for _, driver := range storetest.Backends {
		for _, step := range []bool{true, false} {
			name := driver + "/catch-up"
			if step {
				name = driver + "/step"
			}
			t.Run(name, func(t *testing.T) {
				w := newWorld(t, driver, step)
				w.fleetDay()
				day := Query{From: t0, To: t0.Add(24 * time.Hour)}
				want := map[string]Row{
					"G1": {Key: "G1", CustomersServed: 8, Interruptions: 8, CustomerMinutes: 390, Momentary: 1, Unplanned: 8,
						SAIFI: 1, SAIDI: 48.75, CAIDI: 48.75, MAIFI: 0.125},
					"G2": {Key: "G2", CustomersServed: 4, Interruptions: 8, CustomerMinutes: 720, Planned: 4, Unplanned: 4,
						SAIFI: 2, SAIDI: 180, CAIDI: 90},
				}
				w.checkReport(day, want)
				// Whole days in Shanghai: read from the daily rollup.
				cst := time.FixedZone("CST", 8*3600)
				w.checkReport(Query{From: time.Date(2026, 11, 2, 0, 0, 0, 0, cst), To: time.Date(2026, 11, 4, 0, 0, 0, 0, cst)}, want)
				// One whole day (P1, the blip) from the rollup, the edges (TA-02) from the rows.
				w.checkReport(Query{From: time.Date(2026, 11, 1, 20, 0, 0, 0, cst), To: time.Date(2026, 11, 3, 4, 0, 0, 0, cst)}, map[string]Row{
					"G1": {Key: "G1", CustomersServed: 8, Interruptions: 4, CustomerMinutes: 150, Momentary: 1, Unplanned: 4,
						SAIFI: 0.5, SAIDI: 18.75, CAIDI: 37.5, MAIFI: 0.125},
					"G2": {Key: "G2", CustomersServed: 4, Interruptions: 4, CustomerMinutes: 480, Planned: 4, SAIFI: 1, SAIDI: 120, CAIDI: 120},
				})
				day.Planned = "exclude"
				w.checkReport(day, map[string]Row{
					"G1": want["G1"],
					"G2": {Key: "G2", CustomersServed: 4, Interruptions: 4, CustomerMinutes: 240, Unplanned: 4, SAIFI: 1, SAIDI: 60, CAIDI: 60},
				})
				day.Planned = "only"
				w.checkReport(day, map[string]Row{
					"G1": {Key: "G1", CustomersServed: 8},
					"G2": {Key: "G2", CustomersServed: 4, Interruptions: 4, CustomerMinutes: 480, Planned: 4, SAIFI: 1, SAIDI: 120, CAIDI: 120},
				})
				w.checkReport(Query{From: t0, To: t0.Add(24 * time.Hour), By: "area"}, map[string]Row{
					"TA-01": {Key: "TA-01", CustomersServed: 4, Interruptions: 4, CustomerMinutes: 240, Momentary: 1, Unplanned: 4,
						SAIFI: 1, SAIDI: 60, CAIDI: 60, MAIFI: 0.25},
					"TA-02": {Key: "TA-02", CustomersServed: 4, Interruptions: 4, CustomerMinutes: 150, Unplanned: 4,
						SAIFI: 1, SAIDI: 37.5, CAIDI: 37.5},
					"TA-03": {Key: "TA-03", CustomersServed: 4, Interruptions: 8, CustomerMinutes: 720, Planned: 4, Unplanned: 4,
						SAIFI: 2, SAIDI: 180, CAIDI: 90},
				})
				// A manager of G1 sees G1 alone; its feeder F-1 is G1's.
				w.checkReport(Query{From: t0, To: t0.Add(24 * time.Hour), By: "feeder", Grids: []string{"G1"}}, map[string]Row{
					"F-1": {Key: "F-1", CustomersServed: 8, Interruptions: 8, CustomerMinutes: 390, Momentary: 1, Unplanned: 8,
						SAIFI: 1, SAIDI: 48.75, CAIDI: 48.75, MAIFI: 0.125},
				})
			})
		}
	}
}

// checkReport compares q's rows with want, the proactive block aside.
func (w *world) checkReport(q Query, want map[string]Row) {
	w.t.Helper()
	rep, err := w.care.Reliability(w.ctx, q)
	if err != nil {
		w.t.Fatal(err)
	}
	if len(rep.Rows) != len(want) {
		w.t.Errorf("Reliability(%s, planned %s, grids %v) has %d rows %+v, want %d", q.By, q.Planned, q.Grids, len(rep.Rows), rep.Rows, len(want))
	}
	for _, r := range rep.Rows {
		r.Proactive, r.FrequentOutageCustomers = Proactive{}, 0
		if !reflect.DeepEqual(r, want[r.Key]) {
			w.t.Errorf("Reliability(%s, planned %s) row %s\n got %+v\nwant %+v", q.By, q.Planned, r.Key, r, want[r.Key])
		}
	}
}

// sms reads the outbox file: the messages of kind about ref ("": any) sent so far.
func (w *world) sms(kind, ref string) []map[string]string {
	w.t.Helper()
	f, err := os.Open(w.file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			w.t.Fatal(err)
		}
		if m["kind"] == kind && (ref == "" || m["ref"] == ref) {
			out = append(out, m)
		}
	}
	return out
}

// waitSMS waits until the outbox file holds n messages of kind.
func (w *world) waitSMS(kind, ref string, n int) []map[string]string {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := w.sms(kind, ref)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the outbox file has %d %s messages, want %d: %v", len(got), kind, n, got)
		}
		w.outbox.Kick()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFrequentOutage: the third sustained interruption in 60 days tags the
// customers frequent_outage, their outage SMS says so and apologises, the
// hotline calls before and after the SMS show in the proactive figures,
// and after the restoration the grid's manager gets the follow-up list,
// critical customers first. Managers of another grid see none of it.
func TestFrequentOutage(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver, true)
			w.fleetDay() // TA-03: P1 and F9, two sustained interruptions
			h := time.Hour
			w.at(30*h, meterEvs(event.PowerOff, 30*h, "M0301", "M0302", "M0303", "M0304")...)
			w.at(30*h + 61*time.Second)
			var id string
			for _, o := range w.rules.Outages("active") {
				if strings.HasPrefix(o.ID, "AMI-TA-03") {
					id = o.ID
				}
			}
			if id == "" {
				t.Fatalf("no outage of TA-03 among %+v", w.rules.Outages(""))
			}
			got := w.waitSMS("outage", id, 4)
			for _, m := range got {
				if !strings.Contains(m["body"], "近60天第3次停电，深表歉意。") {
					t.Errorf("the third outage's SMS to %s does not apologise: %s", m["account"], m["body"])
				}
			}
			for _, m := range w.sms("outage", "") {
				if m["ref"] != id && strings.Contains(m["body"], "歉意") {
					t.Errorf("an SMS of a first or second outage apologises: %s", m["body"])
				}
			}
			// The file is written before the store marks the messages sent.
			var first map[string]int64
			for deadline := time.Now().Add(20 * time.Second); len(first) < 4; time.Sleep(20 * time.Millisecond) {
				var err error
				byRef, err := w.outbox.FirstSent(w.ctx, []string{id}, 0)
				if first = byRef[id]; err != nil || time.Now().After(deadline) {
					t.Fatalf("FirstSent(%s) = %v, %v; want the 4 customers", id, first, err)
				}
			}
			sentAt := time.Unix(0, first["A0303"])
			last := slices.Max(slices.Collect(maps.Values(first)))
			if again, err := w.outbox.FirstSent(w.ctx, []string{id}, last+1); err != nil || len(again[id]) != 0 {
				t.Errorf("FirstSent(%s) since after its last send = %v, %v; want none (a later look reads only newer sends)", id, again, err)
			}
			if again, err := w.outbox.FirstSent(w.ctx, []string{id}, last); err != nil || len(again[id]) == 0 {
				t.Errorf("FirstSent(%s) since its last send = %v, %v; want that send", id, again, err)
			}
			// A0302 calls before any SMS, A0303 five minutes after it.
			if err := w.care.RecordCall(w.ctx, "A0302", id, t0.Add(30*h+30*time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := w.care.RecordCall(w.ctx, "A0303", id, sentAt.Add(5*time.Minute)); err != nil {
				t.Fatal(err)
			}
			w.at(30*h + 10*time.Minute)
			p, err := w.care.OutageProactive(w.ctx, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Proactive{Affected: 4, Notified: 4, Called: 2, CalledBeforeSMS: 1, MedianLeadS: 300}); !reflect.DeepEqual(p, want) {
				t.Errorf("OutageProactive(%s) = %+v, want %+v", id, p, want)
			}
			if p, _ := w.care.OutageProactive(w.ctx, id, []string{"G1"}); !reflect.DeepEqual(p, Proactive{}) {
				t.Errorf("OutageProactive(%s) for a manager of G1 = %+v, want nothing", id, p)
			}
			acct, _ := w.reg.Account("A0301")
			pr, err := w.care.Profile(w.ctx, acct)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(pr.Tags, ",") != "frequent_outage,complaint_risk" || pr.Outages != (Periods{3, 3, 3}) || pr.LastOutage == nil || pr.LastOutage.ID != id {
				t.Errorf("Profile(A0301) = %+v, want frequent_outage and complaint_risk, 3 outages, the last %s", pr, id)
			}
			w.at(31*h, meterEvs(event.PowerOn, 31*h, "M0301", "M0302", "M0303", "M0304")...)
			list, err := w.care.Followup(w.ctx, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			var order []string
			for _, fc := range list {
				order = append(order, fc.Account)
			}
			if strings.Join(order, ",") != "A0304,A0301,A0302,A0303" {
				t.Errorf("Followup(%s) = %v, want A0304 (high risk) first, then A0301..A0303", id, order)
			}
			if list, _ := w.care.Followup(w.ctx, id, []string{"G1"}); len(list) != 0 {
				t.Errorf("Followup(%s) for a manager of G1 = %v, want none", id, list)
			}
			digests := w.waitSMS("manager_digest", id, 2) // the outage's digest, then the follow-up list
			if m := digests[1]; m["to"] != "+8613900000002" || !strings.Contains(m["body"], "请回访4户（重要1户）：A0304(3)") {
				t.Errorf("the follow-up list to G2's manager = %v", m)
			}
			rep, err := w.care.Reliability(w.ctx, Query{From: t0, To: t0.Add(48 * h)})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Rows {
				if r.Key == "G2" && (r.FrequentOutageCustomers != 4 || r.Proactive.Called != 2 || r.Proactive.CalledBeforeSMS != 1) {
					t.Errorf("G2's row = %+v, want 4 frequent-outage customers, 2 called, 1 before the SMS", r)
				}
			}
		})
	}
}

// TestPrune: closed interruptions, calls and follow-up records older than
// care.history go; open ones and younger ones stay.
func TestPrune(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver, true)
			w.fleetDay()
			if err := w.care.RecordCall(w.ctx, "A0101", "F9", t0.Add(20*time.Hour+time.Minute)); err != nil {
				t.Fatal(err)
			}
			count := func(table string) int {
				var n int
				if err := w.db.QueryRowContext(w.ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			before := count("care_interruptions")
			// Before the nested outage: the planned one and the blip go.
			n, err := w.care.Prune(w.ctx, t0.Add(6*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if n != 5 || count("care_interruptions") != before-5 || count("care_calls") != 1 {
				t.Errorf("Prune(6h) = %d, %d of %d rows left, %d calls; want P1's 4 and the blip gone, the call kept", n, count("care_interruptions"), before, count("care_calls"))
			}
			if n, err := w.care.Prune(w.ctx, t0.Add(48*time.Hour)); err != nil || count("care_interruptions") != 0 || count("care_calls") != 0 {
				t.Errorf("Prune(48h) = %d, %v: %d rows, %d calls left, want none", n, err, count("care_interruptions"), count("care_calls"))
			}
		})
	}
}

// TestFencedAfterTakeover: an instance paused past the care lease (or cut
// off from the store) while another took the lease over must not commit
// the step it was in: the rollup's changes would count twice.
func TestFencedAfterTakeover(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver, false)
			l, err := store.AcquireLease(w.ctx, w.db, leaseName, "paused", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			w.care.holder = l.Holder()
			h := time.Hour
			w.at(h, oms("P1", event.OutagePlanned, event.StatusStarted, h, h, "TA-03"))
			w.at(3*h, oms("P1", event.OutagePlanned, "restored", h, 3*h, "TA-03"))
			if _, err := w.care.Step(w.ctx); err != nil {
				t.Fatalf("Step while holding the lease: %v", err)
			}
			daily := func() (n int64) {
				if err := w.db.QueryRowContext(w.ctx, `SELECT COALESCE(SUM(sustained), 0) FROM care_daily`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if n := daily(); n != 4 {
				t.Fatalf("care_daily counts %d sustained interruptions after P1, want 4", n)
			}
			// Another instance takes the lease over while this one is paused.
			if _, err := w.db.ExecContext(w.ctx, `UPDATE store_leases SET holder = 'another' WHERE name = $1`, leaseName); err != nil {
				t.Fatal(err)
			}
			w.at(20*h, oms("F9", event.OutageFault, event.StatusStarted, 20*h, 20*h, "TA-01", "TA-03"))
			w.at(21*h, oms("F9", event.OutageFault, "restored", 20*h, 21*h, "TA-01", "TA-03"))
			if _, err := w.care.Step(w.ctx); !errors.Is(err, ErrFenced) {
				t.Errorf("Step after a takeover = %v, want ErrFenced", err)
			}
			if n := daily(); n != 4 {
				t.Errorf("care_daily counts %d sustained interruptions after the fenced step, want P1's 4 alone", n)
			}
		})
	}
}

// countingMessages is the real outbox, counting the records FirstSent is
// asked about.
type countingMessages struct {
	*notify.Outbox
	refs int
}

func (m *countingMessages) FirstSent(ctx context.Context, refs []string, since int64) (map[string]map[string]int64, error) {
	m.refs += len(refs)
	return m.Outbox.FirstSent(ctx, refs, since)
}

// TestFillSMSSkipsUnreachable: a live record whose customers without an
// SMS time have no number an SMS can go to is not asked about every 30 s;
// one with a reachable customer still waiting for its SMS is.
func TestFillSMSSkipsUnreachable(t *testing.T) {
	w := newWorld(t, "sqlite", false)
	msgs := &countingMessages{Outbox: w.outbox}
	w.care.msgs = msgs
	rs := &recState{rec: rules.Record{ID: "R1", Status: "active"}, live: true, accts: map[string]*interruption{
		"A0101":    {outage: "R1", account: "A0101", sms: t0.UnixNano()},
		"NO-PHONE": {outage: "R1", account: "NO-PHONE"}, // not in the registry: nothing reaches it
	}}
	w.care.p.recs["R1"] = rs
	if err := w.care.fillSMS(w.ctx, t0); err != nil {
		t.Fatal(err)
	}
	if msgs.refs != 0 {
		t.Errorf("fillSMS asked about %d records, want none: only an unreachable customer lacks its SMS", msgs.refs)
	}
	rs.accts["A0102"] = &interruption{outage: "R1", account: "A0102"}
	if err := w.care.fillSMS(w.ctx, t0); err != nil {
		t.Fatal(err)
	}
	if msgs.refs != 1 {
		t.Errorf("fillSMS asked about %d records, want R1: A0102 has a mobile and no SMS yet", msgs.refs)
	}
	// R1 was looked at: the next look reads the messages sent since, and
	// finds A0102's.
	sent := t0.Add(10 * time.Second).UnixNano()
	if _, err := w.db.ExecContext(w.ctx, `INSERT INTO notify_messages (id, msg_key, kind, template, ref, phone, accounts, grid,
		lang, vars, body, priority, status, reason, attempts, due_at, queued_at, claimed_at, sent_at, provider_id, updated_at)
		VALUES ('sms-1', 'k1', 'outage', 'outage', 'R1', '+8613800000102', 'A0102', 'G1', 'zh', '{}', 'b', 1, 'sent', '', 1, 0, 0, 0, $1, 'p1', $1)`, sent); err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.ExecContext(w.ctx, `INSERT INTO notify_links (intent_key, phone, account, ref, message_id, status, reason, created_at)
		VALUES ('i1', '+8613800000102', 'A0102', 'R1', 'sms-1', 'queued', '', 0)`); err != nil {
		t.Fatal(err)
	}
	if err := w.care.fillSMS(w.ctx, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := rs.accts["A0102"].sms; got != sent {
		t.Errorf("A0102's SMS time after a message sent since the last look = %d, want %d", got, sent)
	}
}

// TestFrequentCaughtUpAtOnce: three sustained interruptions of the same
// customers projected in one step (care caught up after a day away) are
// their first, second and third: the third reaches the frequent-outage line.
func TestFrequentCaughtUpAtOnce(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver, false)
			h := time.Hour
			for i, id := range []string{"F1", "F2", "F3"} {
				at := time.Duration(1+10*i) * h
				w.at(at, oms(id, event.OutageFault, event.StatusStarted, at, at, "TA-03"))
				w.at(at+h, oms(id, event.OutageFault, "restored", at, at+h, "TA-03"))
			}
			w.catchUp()
			rep, err := w.care.Reliability(w.ctx, Query{From: t0, To: t0.Add(48 * h)})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Rows {
				if r.Key == "G2" && (r.Interruptions != 12 || r.FrequentOutageCustomers != 4) {
					t.Errorf("G2's row = %+v, want 12 interruptions and the 4 customers at the line", r)
				}
			}
		})
	}
}
