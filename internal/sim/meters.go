package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/gridbell/gridbell/internal/fleet"
)

// tariff turns consumption into prepaid spending, CNY per kWh.
const tariff = 0.56

// meter is one simulated smart meter.
type meter struct {
	id, conc   string
	baseKW     float64 // typical load
	kwh        float64 // cumulative import
	threePhase bool
	prepaid    bool
	balance    float64 // CNY, prepaid only
	dark       bool
}

// plant is the simulated fleet of meters, grouped by concentrator. Only the
// playing goroutine touches it.
type plant struct {
	meters  map[string]*meter
	concs   []string            // concentrators in fleet order
	byConc  map[string][]*meter // meters in fleet order
	balance map[string]float64  // scenario-set balances, by meter
	rng     *rand.Rand
}

func newPlant(f *fleet.Fleet, seed uint64) *plant {
	p := &plant{meters: map[string]*meter{}, byConc: map[string][]*meter{}, balance: map[string]float64{},
		rng: rand.New(rand.NewPCG(seed, 0x67726964))}
	c := newCast(f)
	for _, cu := range f.Customers {
		if cu.Meter == "" || p.meters[cu.Meter] != nil {
			continue
		}
		conc := c.byName[cu.Area].conc
		m := p.newMeter(cu, conc)
		p.meters[m.id] = m
		if p.byConc[conc] == nil {
			p.concs = append(p.concs, conc)
		}
		p.byConc[conc] = append(p.byConc[conc], m)
	}
	return p
}

// newMeter sizes a meter by customer class. The concentrator comes from the
// area, so a messy row without one still reads through its area's.
func (p *plant) newMeter(cu fleet.Customer, conc string) *meter {
	lo, hi := 0.3, 2.5
	switch cu.Class {
	case "commercial":
		lo, hi = 3, 15
	case "industrial", "high_risk":
		lo, hi = 30, 150
	case "important":
		lo, hi = 10, 60
	}
	m := &meter{id: cu.Meter, conc: conc, prepaid: cu.Prepaid}
	m.baseKW = lo + (hi-lo)*p.rng.Float64()
	m.threePhase = m.baseKW > 10
	m.kwh = round(m.baseKW*(1500+4000*p.rng.Float64()), 2)
	if m.prepaid {
		m.balance = round(80+500*p.rng.Float64(), 2)
	}
	return m
}

// setPower darkens or lights meters; unknown ids are ignored.
func (p *plant) setPower(ids []string, dark bool) {
	for _, id := range ids {
		if m := p.meters[id]; m != nil {
			m.dark = dark
		}
	}
}

// read advances every powered meter behind conc by one cycle of length
// cycle and returns their readings stamped ts; dark meters read nothing.
func (p *plant) read(conc string, ts time.Time, cycle time.Duration) []readingMsg {
	var out []readingMsg
	stamp := ts.Format(time.RFC3339)
	load := dailyLoad(ts)
	for _, m := range p.byConc[conc] {
		if m.dark {
			continue
		}
		kw := m.baseKW * load * (0.8 + 0.4*p.rng.Float64())
		used := kw * cycle.Hours()
		m.kwh += used
		v := 220 + math.Max(-5, math.Min(5, 1.8*p.rng.NormFloat64()))
		phases := 1.0
		if m.threePhase {
			phases = 3
		}
		r := readingMsg{Meter: m.id, TS: stamp, KWh: round(m.kwh, 2), Voltage: round(v, 1),
			Current: round(kw*1000/(phases*v*0.95), 2), PowerKW: round(kw, 3)}
		if m.prepaid {
			m.balance -= used * tariff
			b := round(m.balance, 2)
			if s, ok := p.balance[m.id]; ok {
				b = s
			}
			r.Balance = &b
		}
		out = append(out, r)
	}
	return out
}

// dailyLoad is the share of a meter's typical load drawn at ts: low at night,
// an evening peak.
func dailyLoad(ts time.Time) float64 {
	switch h := ts.In(cst).Hour(); {
	case h < 6:
		return 0.45
	case h < 9:
		return 0.9
	case h < 17:
		return 0.8
	case h < 22:
		return 1.25
	}
	return 0.7
}

func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}
