// Package sim is the synthetic AMI head-end behind `gridbell simulate` and
// `make run`. It stands before ingest in the flow: it publishes a fleet's
// meter readings and events over MQTT (docs/interfaces.md §1) and plays a demo outage
// scenario, posting the OMS and billing side to gridbell's HTTP API (§2).
// gridbell never imports it outside the simulate command.
package sim

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/fleet"
)

// Options configure one simulation run. Durations are on the scenario clock;
// TimeScale maps it to the wall clock.
type Options struct {
	Broker    string        // MQTT URL, e.g. tcp://127.0.0.1:1884; user:password@ in the URL is used
	Prefix    string        // topic prefix, default "ami"
	API       string        // gridbell HTTP base, e.g. http://127.0.0.1:8080; "" = no OMS or billing posts
	Token     string        // bearer token for the API, may be ""
	Fleet     *fleet.Fleet  // required
	Interval  time.Duration // reading cycle, default 10s: every powered meter reads once a cycle
	Scenario  bool          // play the demo scenario
	Duration  time.Duration // 0 = until ctx is done
	TimeScale float64       // wall time per scenario time; default 1, 0.01 plays 100× faster
	ReadyWait time.Duration // how long to wait for the API's /readyz before playing; default 60s, <0 = not at all
	Seed      uint64        // seeds the loads and balances; 0 = a fixed default
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = "ami"
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.TimeScale == 0 {
		o.TimeScale = 1
	}
	if o.ReadyWait == 0 {
		o.ReadyWait = 60 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = 20261126
	}
}

func (o Options) validate() error {
	switch {
	case o.Fleet == nil:
		return errors.New("sim: no fleet")
	case o.Broker == "":
		return errors.New("sim: no MQTT broker URL")
	case o.Interval < 0 || o.TimeScale < 0 || o.Duration < 0:
		return errors.New("sim: interval, time scale and duration cannot be negative")
	}
	return nil
}

// Run publishes readings every Interval and, with Scenario, plays the steps
// of Scenario(o.Fleet). It returns nil when Duration has passed or ctx is
// done, and an error only for bad options.
func Run(ctx context.Context, o Options, log zerolog.Logger) error {
	o.defaults()
	if err := o.validate(); err != nil {
		return err
	}
	c, err := dial(ctx, o.Broker, log)
	if err != nil {
		return nil // ctx done while the broker was away
	}
	defer c.Disconnect(250)

	p := &player{o: o, log: log, c: c, plant: newPlant(o.Fleet, o.Seed)}
	if o.API != "" {
		waitReady(ctx, o.API, o.ReadyWait, log)
		p.api = newPoster(o.API, o.Token, log)
		go p.api.run(ctx)
		defer func() { close(p.api.q); <-p.api.done }()
	}
	if o.Scenario {
		p.steps = Scenario(o.Fleet)
	}
	log.Info().Int("meters", len(p.plant.meters)).Int("concentrators", len(p.plant.concs)).
		Dur("interval", o.Interval).Int("steps", len(p.steps)).Float64("time_scale", o.TimeScale).Msg("simulation starting")
	p.play(ctx)
	return nil
}

// player plays one run. Only its own goroutine touches it.
type player struct {
	o       Options
	log     zerolog.Logger
	c       mqtt.Client
	api     *poster // nil without API
	plant   *plant
	steps   []Step
	start   time.Time // scenario time zero, in +08:00
	cycles  int
	lastErr time.Time // last publish error logged, for throttling
}

// play runs the timeline: steps and reading cycles in time order, a step
// before a cycle due at the same time, until Duration or ctx ends it.
func (p *player) play(ctx context.Context) {
	wallStart := time.Now()
	p.start = wallStart.In(cst).Truncate(time.Second)
	next := 0
	for {
		at := time.Duration(p.cycles) * p.o.Interval
		isStep := next < len(p.steps) && p.steps[next].At <= at
		if isStep {
			at = p.steps[next].At
		}
		if p.o.Duration > 0 && at >= p.o.Duration {
			p.log.Info().Int("cycles", p.cycles).Msg("simulation done")
			return
		}
		if !sleepUntil(ctx, wallStart.Add(time.Duration(float64(at)*p.o.TimeScale))) {
			return
		}
		if isStep {
			p.apply(ctx, p.steps[next])
			next++
		} else {
			p.cycle(at)
			p.cycles++
		}
	}
}

// sleepUntil waits for t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// cycle uploads one reading batch per concentrator that has power.
func (p *player) cycle(at time.Duration) {
	ts := p.start.Add(at)
	var msgs []message
	n := 0
	for _, conc := range p.plant.concs {
		rs := p.plant.read(conc, ts, p.o.Interval)
		if len(rs) == 0 {
			continue // a dark concentrator uploads nothing
		}
		n += len(rs)
		msgs = append(msgs, jsonMessage(p.topic(conc, "readings"), rs))
	}
	err := publish(p.c, msgs)
	p.report(err, "cannot upload readings")
	ev := p.log.Debug()
	if p.cycles%6 == 0 {
		ev = p.log.Info()
	}
	ev.Int("cycle", p.cycles).Int("readings", n).Int("batches", len(msgs)).Msg("readings uploaded")
}

// apply plays one step.
func (p *player) apply(ctx context.Context, s Step) {
	ts := p.start.Add(s.At)
	stamp := ts.Format(time.RFC3339)
	ev := p.log.Info().Str("step", s.Name).Str("at", s.At.String())
	if s.Area != "" {
		ev = ev.Str("area", s.Area)
	}
	ev.Msg(s.What)
	p.plant.setPower(s.Dark, true)
	p.plant.setPower(s.Lit, false)
	var msgs []message
	if s.Concentrator != "" {
		msgs = append(msgs, jsonMessage(p.topic(s.Concentrator, "event"), concEventMsg{Concentrator: s.Concentrator, TS: stamp, Type: s.Event}))
	}
	for _, id := range s.Signals {
		conc := s.Concentrator
		if m := p.plant.meters[id]; m != nil {
			conc = m.conc
		}
		msgs = append(msgs, jsonMessage(p.topic(conc, id, "event"), meterEventMsg{Meter: id, TS: stamp, Type: s.Event}))
	}
	if len(msgs) > 0 {
		p.report(publish(p.c, msgs), "cannot publish events of step "+s.Name)
	}
	if s.OMS != nil {
		p.postAPI(ctx, omsPath, s.Name, omsMessage(s.OMS, p.start, ts))
	}
	if s.Billing != nil {
		p.postAPI(ctx, billingPath, s.Name, billingMessage(s.Billing, p.start, ts))
	}
	if s.BalanceMeter != "" {
		p.plant.balance[s.BalanceMeter] = s.Balance
	}
}

func (p *player) postAPI(ctx context.Context, path, what string, v any) {
	if p.api == nil {
		p.log.Debug().Str("step", what).Msg("no API configured, OMS/billing event skipped")
		return
	}
	p.api.enqueue(ctx, path, what, v)
}

// report logs a publish error, at most once every 10 s: a broker outage
// fails every cycle.
func (p *player) report(err error, msg string) {
	if err == nil || time.Since(p.lastErr) < 10*time.Second {
		return
	}
	p.lastErr = time.Now()
	p.log.Error().Err(err).Msg(msg)
}

func (p *player) topic(parts ...string) string {
	t := p.o.Prefix
	for _, s := range parts {
		t += "/" + s
	}
	return t
}

// String describes a step for logs and test failures.
func (s Step) String() string {
	return fmt.Sprintf("%s %s: %s", s.At, s.Name, s.What)
}
