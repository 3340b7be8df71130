package ingest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// meterPoison refuses, every time and not as Temporary, the events of one
// meter: an effect that can never be stored. Before that it answers down
// calls as the rules do while their store is down (Temporary).
type meterPoison struct {
	*recorder
	meter   string
	mu      sync.Mutex
	down    int // fail this many calls first, Temporary
	refused int // calls refused for the poison
}

func (p *meterPoison) Handle(ctx context.Context, evs []event.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down > 0 {
		p.down--
		return storeDown{}
	}
	for _, e := range evs {
		if (e.Reading != nil && e.Reading.Meter == p.meter) || (e.Meter != nil && e.Meter.Meter == p.meter) {
			p.refused++
			return fmt.Errorf("cannot store meter %s: value out of range", p.meter)
		}
	}
	return p.recorder.Handle(ctx, evs)
}

func (p *meterPoison) refusals() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// TestMQTTPoisonMessage (Mosquitto): a message the rules refuse every time
// goes to the dead letters after a bounded number of tries, with its topic,
// and is acknowledged: the messages around it are handled once each, and
// after a reconnection it does not come back. A handler that is only
// unavailable for a while (Temporary errors) sends nothing to the dead
// letters.
func TestMQTTPoisonMessage(t *testing.T) {
	ctx := context.Background()
	broker := mosquitto(t)
	dl, err := OpenDeadLetters(ctx, storetest.Open(t, "sqlite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	h := &meterPoison{recorder: newRecorder(), meter: "POISON", down: 3 * poisonTries}
	p, pub := cfg.TopicPrefix, publisher(t, broker)
	const good = 200
	reading := func(meter string, i int) {
		publish(t, pub, fmt.Sprintf("%s/C1/%s/reading", p, meter),
			fmt.Sprintf(`{"meter":%q,"ts":"2026-11-26T08:%02d:%02dZ","kwh":%d}`, meter, i/60%60, i%60, i))
	}
	// Published before the input connects, so they arrive in a few large
	// batches, the poison inside one of them.
	run := startMQTT(t, cfg, h, dl, nil)
	run.stop(t)
	for i := range good {
		if i == good/2 {
			reading("POISON", i)
		}
		reading(fmt.Sprintf("M%d", i), i)
	}
	run = startMQTT(t, cfg, h, dl, nil)
	waitFor(t, 60*time.Second, "every good reading and a dead letter", func() bool {
		letters, err := dl.List(ctx, 10)
		return err == nil && len(letters) > 0 && h.distinct() == good
	})
	letters, err := dl.List(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	topic := p + "/C1/POISON/reading"
	if len(letters) != 1 || letters[0].Topic != topic || !strings.HasPrefix(letters[0].Reason, ReasonUnstorable+": topic "+topic) ||
		!strings.Contains(letters[0].Reason, "value out of range") || !strings.Contains(string(letters[0].Raw), "POISON") {
		t.Fatalf("dead letters %+v, want only the poison reading, unstorable, with its topic", letters)
	}
	if lost, dup := good-h.distinct(), h.total()-h.distinct(); lost != 0 || dup != 0 {
		t.Errorf("good readings lost %d, duplicated %d of %d", lost, dup, good)
	}
	refused := h.refusals()
	if refused < poisonTries || refused > 2*poisonTries {
		t.Errorf("poison offered %d times, want between %d and %d", refused, poisonTries, 2*poisonTries)
	}

	// Acknowledged: after a reconnection of the same session the broker
	// does not deliver it again.
	run.stop(t)
	reading("M-after", 0)
	run = startMQTT(t, cfg, h, dl, nil)
	defer run.stop(t)
	waitFor(t, 30*time.Second, "the reading after the reconnection", func() bool { return h.distinct() == good+1 })
	time.Sleep(time.Second) // a redelivered poison would be offered by now
	if got := h.refusals(); got != refused {
		t.Errorf("poison offered %d more times after the reconnection: it was not acknowledged", got-refused)
	}
	if letters, _ := dl.List(ctx, 10); len(letters) != 1 {
		t.Errorf("%d dead letters after the reconnection, want 1", len(letters))
	}
}
