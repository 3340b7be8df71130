package notify

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// logSample is a mixed run of intents: shared and distinct strings, one
// vars map shared by several intents (as the rules share an area's) with
// another between them, an explicit recipient, aliases, vars that need
// escaping, times before the previous intent's.
func logSample(now time.Time) []event.Intent {
	area1 := map[string]string{"area": "TA-0001", "outage_id": "AMI-TA-0001"}
	ins := []event.Intent{
		{Key: "outage/AMI-TA-0001/0100000001", Kind: event.KindOutage, Account: "0100000001", Grid: "G01", Ref: "AMI-TA-0001",
			Vars: area1, Priority: event.PriorityCritical, CreatedAt: now},
		{Key: "outage/AMI-TA-0001/0100000002", Kind: event.KindOutage, Account: "0100000002", Grid: "G01", Ref: "AMI-TA-0001",
			Vars: area1, Priority: event.PriorityOutage, CreatedAt: now},
		{Key: "outage/AMI-TA-0001/0100000003", Kind: event.KindOutage, Account: "0100000003", Grid: "G01", Ref: "AMI-TA-0001",
			Vars: map[string]string{"area": "TA-0002", "outage_id": "AMI-TA-0001"}, Priority: event.PriorityOutage, CreatedAt: now},
		{Key: "outage/AMI-TA-0001/0100000004", Kind: event.KindOutage, Account: "0100000004", Grid: "G01", Ref: "AMI-TA-0001",
			Vars: area1, Priority: event.PriorityOutage, CreatedAt: now},
		{Key: "digest/G02/1", Kind: event.KindManagerDigest, Grid: "G02", To: "+8613800000009",
			Vars: map[string]string{"areas": "3", "note": "say \"hi\" <b>&\u2028"}, Priority: event.PriorityOutage, CreatedAt: now.Add(-time.Hour)},
		{Key: "restored/AMI-TA-0001/0100000002", Kind: event.KindRestored, Account: "0100000002", Grid: "G01", Ref: "AMI-TA-0001",
			Aliases: []string{"OMS-7", "OMS-8"}, Priority: event.PriorityOutage, NotBefore: now.Add(10 * time.Minute), CreatedAt: now},
		{Key: "r", Kind: event.KindRestored, Account: "0100000002", Grid: "G01", Ref: "AMI-TA-0001", Priority: 7},
	}
	return ins
}

func TestIntentLogRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	ins := logSample(now)
	data, err := encodeIntentLog(ins, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeIntentLog(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ins) {
		t.Fatalf("decoded %d intents, want %d", len(got), len(ins))
	}
	for i, in := range ins {
		want, err := (&recEncoder{now: now}).rec(in) // each on its own: no vars kept from another
		if err != nil {
			t.Fatal(err)
		}
		if got[i] != want {
			t.Errorf("intent %d decoded as %+v, want %+v", i, got[i], want)
		}
	}
	for cut := 1; cut < len(data); cut++ {
		if recs, err := decodeIntentLog(data[:cut]); err == nil && len(recs) == len(ins) {
			t.Fatalf("a row cut to %d of %d bytes decoded whole", cut, len(data))
		}
	}
}

// FuzzDecodeIntentLog: any bytes decode without a panic, and what decodes
// encodes back to the same intents.
func FuzzDecodeIntentLog(f *testing.F) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	data, err := encodeIntentLog(logSample(now), now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte{logFormat1})
	f.Add([]byte{logFormat1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeIntentLog(b)
		if err != nil {
			return
		}
		var again []byte
		again = append(again, logFormat1)
		var prev intentRec
		for i := range recs {
			again = appendIntentRec(again, &prev, &recs[i])
			prev = recs[i]
		}
		back, err := decodeIntentLog(again)
		if err != nil || !reflect.DeepEqual(back, recs) {
			t.Fatalf("re-encoded row decodes as %v (%v), want %v", back, err, recs)
		}
	})
}

// TestIntentLogUnpack logs more intents than a row holds, some of them
// already stored, and a row that cannot be decoded; unpacking moves every
// logged intent into notify_intents once, in the order logged, and keeps
// the bad row aside.
func TestIntentLogUnpack(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver, nil, at(10, 0), nil) // Enqueue and unpack read no directory
			o, db, clk := h.o, h.o.db, h.clk
			ctx := context.Background()
			n := 2*logChunk + 5
			ins := loadIntents(n, clk.Now())
			// Two already stored directly, with another account: the stored
			// copy stays, as an INSERT of a stored key always did.
			first := []event.Intent{ins[7], ins[logChunk+3]}
			first[0].Account, first[1].Account = "0199999991", "0199999992"
			if err := o.Enqueue(ctx, nil, first); err != nil {
				t.Fatal(err)
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := o.Enqueue(ctx, tx, ins); err != nil {
				t.Fatal(err)
			}
			// A row of garbage logged before them: unpacked first, it is set aside.
			if _, err := tx.ExecContext(ctx, `INSERT INTO notify_intent_log (id, at, n, data) VALUES ('bad', 1, 3, $1)`,
				[]byte{logFormat1, 0, 0, 0xff}); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			var rows, logged int
			db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(n), 0) FROM notify_intent_log WHERE n >= 0`).Scan(&rows, &logged)
			if rows != 4 || logged != n+3 {
				t.Fatalf("intent log: %d rows of %d intents, want 4 of %d", rows, logged, n+3)
			}
			// Counted before the unpack: the two stored and every logged one
			// (the two keys stored already among them, twice until unpacked).
			if got, err := CountIntents(ctx, db, ins[0].Kind); err != nil || got != n+2 {
				t.Fatalf("CountIntents before the unpack = %d, %v; want %d", got, err, n+2)
			}
			before := testutil.ToFloat64(logCorrupt)
			if _, err := o.unpack(ctx); err == nil {
				t.Fatal("unpacking a corrupt row succeeded")
			}
			if got := testutil.ToFloat64(logCorrupt) - before; got != 1 {
				t.Errorf("corrupt rows counted %v, want 1", got)
			}
			moved, err := o.Unpack(ctx)
			if err != nil || moved != n {
				t.Fatalf("Unpack = %d, %v; want %d", moved, err, n)
			}
			var bad int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(n), 0) FROM notify_intent_log`).Scan(&rows, &bad); err != nil {
				t.Fatal(err)
			}
			if rows != 1 || bad != -4 {
				t.Fatalf("after Unpack the log holds %d rows (n sum %d), want the corrupt one kept with n = -4", rows, bad)
			}
			var stored int
			db.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_intents`).Scan(&stored)
			if stored != n {
				t.Fatalf("%d intents stored, want %d", stored, n)
			}
			if got, err := CountIntents(ctx, db, ins[0].Kind); err != nil || got != n {
				t.Fatalf("CountIntents after the unpack = %d, %v; want %d", got, err, n)
			}
			var acct string
			db.QueryRowContext(ctx, `SELECT account FROM notify_intents WHERE key = $1`, ins[7].Key).Scan(&acct)
			if acct != "0199999991" {
				t.Errorf("a key stored before its logged copy was unpacked has account %s, want the stored one", acct)
			}
			if !db.Postgres() { // SQLite breaks ties in insertion order
				due, err := o.dueIntents(ctx, db, clk.Now())
				if err != nil {
					t.Fatal(err)
				}
				want := append([]event.Intent{ins[7], ins[logChunk+3]}, ins[:7]...)
				want = append(want, ins[8:]...)
				for i, in := range due {
					if in.Key != want[i].Key {
						t.Fatalf("due intent %d is %s, want %s: not in the order logged", i, in.Key, want[i].Key)
					}
				}
			}
		})
	}
}

// TestIntentLogDispatch: a storm's intents, logged by this instance's rules
// or by another's, each reach their customer once through the running
// dispatcher.
func TestIntentLogDispatch(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		for _, by := range []string{"this instance", "another instance"} {
			t.Run(by, func(t *testing.T) { testIntentLogDispatch(t, driver, by == "another instance") })
		}
	})
}

func testIntentLogDispatch(t *testing.T, driver string, other bool) {
	db := storetest.Open(t, driver)
	const n = bulkFrom + 500
	rec := &recorder{}
	reg := loadRegistry(t, db, n)
	o, err := NewOutbox(Config{Workers: 4}, QuietHours{}, db, reg, rec, clock.Real{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	by := o
	if other {
		// Once the dispatcher found the log empty, intents another
		// instance logs reach it without a hint of its own.
		time.Sleep(300 * time.Millisecond)
		if o.logged.Load() {
			t.Fatal("the dispatcher still looks at an empty intent log")
		}
		if by, err = NewOutbox(Config{}, QuietHours{}, db, reg, &recorder{}, clock.Real{}, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
	}
	if err := by.Enqueue(context.Background(), nil, loadIntents(n, time.Now())); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for len(rec.messages()) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a duplicate would show by now
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range rec.messages() {
		seen[m.To]++
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if len(seen) != n || dups != 0 {
		t.Fatalf("%d phones reached (%d duplicates), want %d once each", len(seen), dups, n)
	}
	var left int
	db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM notify_intent_log`).Scan(&left)
	if left != 0 {
		t.Fatalf("%d rows left in the intent log", left)
	}
}
