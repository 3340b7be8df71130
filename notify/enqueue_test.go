package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
	"github.com/gridbell/gridbell/notify/notifytest"
)

// TestEnqueueBulk stores more intents than one statement carries, with
// duplicates inside a call and across calls, in the caller's transaction,
// and reads them back (on SQLite in the order given).
func TestEnqueueBulk(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			db := storetest.Open(t, driver)
			clk := clock.NewFake(at(10, 0))
			// No directory: Enqueue never reads one.
			o, err := NewOutbox(Config{}, QuietHours{}, db, nil, &recorder{}, clk, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			const n = bulkCacheFrom + 1001 // not a whole number of statements
			ins := make([]event.Intent, 0, n+2)
			for i := range n {
				in := intent(fmt.Sprintf("k%05d", (i*7919)%n), event.KindOutage, fmt.Sprintf("01%08d", i), "OMS-1", outageVars)
				in.CreatedAt = clk.Now()
				ins = append(ins, in)
			}
			ins = append(ins, ins[3], ins[n-1]) // duplicates in the same call: ignored
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := o.Enqueue(ctx, tx, ins); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			// A bulk Enqueue is logged (intentlog.go): one row a logChunk,
			// nothing in notify_intents until the dispatcher unpacks it.
			var logged, stored int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(n), 0) FROM notify_intent_log`).Scan(&logged, &stored); err != nil {
				t.Fatal(err)
			}
			if want := (len(ins) + logChunk - 1) / logChunk; logged != want || stored != len(ins) {
				t.Fatalf("intent log holds %d rows of %d intents, want %d of %d", logged, stored, want, len(ins))
			}
			if u, err := o.Unpack(ctx); err != nil || u != len(ins) {
				t.Fatalf("Unpack = %d, %v; want %d", u, err, len(ins))
			}
			again := ins[10]
			again.Account = "0199999999"
			if err := o.Enqueue(ctx, nil, []event.Intent{again}); err != nil { // a duplicate of a stored one
				t.Fatal(err)
			}
			var rows int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_intents`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_intent_log`).Scan(&logged); err != nil || logged != 0 {
				t.Fatalf("intent log holds %d rows after Unpack (%v)", logged, err)
			}
			if rows != n {
				t.Fatalf("%d rows stored, want %d", rows, n)
			}
			due, err := o.dueIntents(ctx, db, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			byKey := map[string]event.Intent{}
			for _, in := range ins[:n] {
				byKey[in.Key] = in
			}
			for i, in := range due {
				want := byKey[in.Key]
				if !db.Postgres() && in.Key != ins[i].Key {
					// SQLite breaks ties in insertion order: the rules'
					// priority order. PostgreSQL's sort keeps no order of ties.
					t.Fatalf("due intent %d is %s, want %s", i, in.Key, ins[i].Key)
				}
				if in.Key != want.Key || in.Account != want.Account || in.Vars["area"] != "TA-0101" || in.Priority != want.Priority ||
					!in.CreatedAt.Equal(want.CreatedAt) || !in.NotBefore.IsZero() || in.Grid != "G01" || in.Ref != "OMS-1" {
					t.Fatalf("due intent %d = %+v, want %+v", i, in, want)
				}
			}
			var state string
			var enq int64
			if err := db.QueryRowContext(ctx, `SELECT state, enqueued_at FROM notify_intents WHERE key = $1`, ins[n-1].Key).Scan(&state, &enq); err != nil {
				t.Fatal(err)
			}
			if state != StatusPending || enq != clk.Now().UnixNano() {
				t.Fatalf("state, enqueued_at = %s, %d; want pending, %d", state, enq, clk.Now().UnixNano())
			}
		})
	}
}

// TestEnqueueRejects checks every intent before storing any.
func TestEnqueueRejects(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver, nil, at(10, 0), nil) // Enqueue reads no directory
			ins := loadIntents(100, h.clk.Now())
			ins[60].Kind = "bogus"
			if err := h.o.Enqueue(context.Background(), nil, ins); err == nil {
				t.Fatal("Enqueue of an unknown kind succeeded")
			}
			var rows int
			h.o.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM notify_intents`).Scan(&rows)
			if rows != 0 {
				t.Fatalf("%d rows stored after a rejected Enqueue, want 0", rows)
			}
		})
	}
}

// TestExpandAcrossBatches: a message stored by an earlier expansion and
// still unsent takes a later account on its phone, and an unsent outage
// message stored earlier is folded into the restored one.
func TestExpandAcrossBatches(t *testing.T) {
	forBackends(t, func(t *testing.T, driver string) {
		dir := notifytest.NewDirectory(
			notifytest.Resident("0100000001", "TA-0101", "zh", "+8613800000001"),
			notifytest.Resident("0100000002", "TA-0101", "zh", "+8613800000001"))
		h := newHarness(t, driver, dir, at(10, 45), nil)
		ctx := context.Background()
		h.enqueue(intent("o1", event.KindOutage, "0100000001", "OMS-1", outageVars))
		if _, err := h.o.expand(ctx); err != nil {
			t.Fatal(err)
		}
		h.enqueue(intent("o2", event.KindOutage, "0100000002", "OMS-1", outageVars))
		if _, err := h.o.expand(ctx); err != nil {
			t.Fatal(err)
		}
		h.enqueue(intent("r1", event.KindRestored, "0100000001", "OMS-1", map[string]string{"area": "TA-0101", "end": "2026-11-26T10:40:00+08:00"}))
		sent := h.run()
		if len(sent) != 1 || sent[0].Kind != event.KindRestored || !strings.Contains(sent[0].Body, "现已恢复供电") ||
			!strings.Contains(sent[0].Body, "****0001") || !strings.Contains(sent[0].Body, "****0002") {
			t.Fatalf("sent %+v, want one consolidated message naming both accounts", sent)
		}
		st := h.stats("OMS-1")
		if st.Accounts["0100000001"] != StatusSent || st.Accounts["0100000002"] != StatusSent {
			t.Errorf("stats %+v, want both accounts sent", st)
		}
	})
}

func TestEncodeVars(t *testing.T) {
	f := func(vars map[string]string) {
		t.Helper()
		want, _ := json.Marshal(vars)
		got, err := encodeVars(vars)
		if err != nil || got != string(want) {
			t.Errorf("encodeVars(%q) = %s, %v; want %s", vars, got, err, want)
		}
	}
	f(nil)
	f(map[string]string{})
	f(outageVars)
	f(map[string]string{"area": "城东 TA-0101", "start": "2026-11-26T09:02:00+08:00", "": ""})
	f(map[string]string{"a": `say "hi"`, "b": `c:\dir`, "c": "<b>&</b>", "d": "line\nbreak\t\x01"})
	f(map[string]string{"x": "bad \xff utf-8", "y": "sep\u2028sep\u2029"})
	f(map[string]string{"b": "2", "a": "1", "c": "3", "aa": "0"})
}
