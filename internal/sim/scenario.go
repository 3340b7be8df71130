package sim

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gridbell/gridbell/internal/fleet"
)

// Step is one thing that happens in the demo scenario. Run applies its parts
// in this order: power changes, the concentrator event, the meters' own
// events, the OMS and billing posts, then the prepaid balance.
type Step struct {
	At   time.Duration // offset from the scenario start, on the scenario clock
	Name string        // short id: "fault-a", "blip-off", …
	What string        // one line for the log
	Area string

	Concentrator string   // non-empty: publish Event on {prefix}/{Concentrator}/event
	Event        string   // power_off or power_on, for Concentrator and Signals
	Signals      []string // meters that publish Event themselves (many last gasps are lost)
	Dark         []string // meters that lose power here and stop reading
	Lit          []string // meters whose power returns here and read again

	OMS     *OMSPost     // posted to /api/v1/oms/events
	Billing *BillingPost // posted to /api/v1/billing/events

	BalanceMeter string // non-empty: this prepaid meter's readings carry Balance from here on
	Balance      float64
}

// OMSPost is an OMS outage message (docs/interfaces.md §2). Times are offsets from the
// scenario start; Run turns them into RFC 3339 times.
type OMSPost struct {
	Seq    int // the scenario's outage number; see omsMessage for the id
	Kind   string
	Status string
	Areas  []string
	Cause  string
	Start  time.Duration
	ETR    time.Duration // 0 = no ETR
}

// BillingPost is a billing event (docs/interfaces.md §2).
type BillingPost struct {
	Account string
	Type    string
	Amount  float64
	DueDays int // due date in days from the scenario's day; negative = overdue
}

// Scenario timeline. The fault in C waits out the 60 s momentary filter, so
// the whole story shows within about 2.5 minutes.
const (
	atNestedOff  = 1 * time.Second
	atFaultA     = 2 * time.Second
	atBlipOff    = 8 * time.Second
	blipLength   = 10 * time.Second
	atFaultC     = 15 * time.Second
	atArrears    = 20 * time.Second
	atETRUpdate  = 50 * time.Second
	atRestoreA   = 90 * time.Second
	atOMSRestore = 92 * time.Second
	atRestoreC   = 100 * time.Second
	atNestedOn   = 150 * time.Second
	firstETR     = 2 * time.Hour
	etrMove      = time.Hour
	blipMeters   = 6
	nestedMeters = 2
)

// balanceSteps is the demo prepaid balance, stepped between reading cycles
// so that 10 s cycles report 45 → 38 → 31 → 27.5 (balance_low) → … → -1.
var balanceSteps = []struct {
	at      time.Duration
	balance float64
}{
	{0, 45}, {5 * time.Second, 38}, {15 * time.Second, 31}, {25 * time.Second, 27.5},
	{35 * time.Second, 20}, {45 * time.Second, 12.5}, {55 * time.Second, 5}, {65 * time.Second, -1},
}

// Scenario returns the demo's planned steps, sorted by time. Area A is the
// fleet's first area, B the second and C the third; with fewer areas the
// outage steps that have no area are left out.
func Scenario(f *fleet.Fleet) []Step {
	c := newCast(f)
	var steps []Step
	if a := c.area(0); a != nil {
		steps = append(steps, faultA(a)...)
	}
	if b := c.area(1); b != nil {
		steps = append(steps, blip(b)...)
	}
	if cc := c.area(2); cc != nil {
		steps = append(steps, faultC(cc)...)
	}
	if acct := c.arrearsAccount(); acct != "" {
		steps = append(steps, Step{At: atArrears, Name: "arrears", What: "billing: arrears of ¥236.40 for account " + acct,
			Billing: &BillingPost{Account: acct, Type: "arrears", Amount: 236.40, DueDays: -6}})
	}
	if m := c.prepaidMeter(); m != "" {
		prev := math.Inf(1)
		for i, b := range balanceSteps {
			steps = append(steps, Step{At: b.at, Name: fmt.Sprintf("balance-%d", i), BalanceMeter: m, Balance: b.balance,
				What: fmt.Sprintf("prepaid meter %s: balance %.2f%s", m, b.balance, balanceNote(prev, b.balance))})
			prev = b.balance
		}
	}
	slices.SortStableFunc(steps, func(x, y Step) int { return int(x.At - y.At) })
	return steps
}

// balanceNote names the SMS a balance change should cause with the default
// rules: balance_low once when it drops below ¥30, balance_exhausted at ¥0.
func balanceNote(prev, b float64) string {
	switch {
	case b <= 0 && prev > 0:
		return " (balance_exhausted)"
	case b < 30 && prev >= 30:
		return " (below ¥30: balance_low)"
	}
	return ""
}

// faultA is the OMS-known fault: the concentrator's and a third of the
// meters' last gasps, an OMS report, an ETR change, and a restoration that
// leaves two meters dark (a nested outage) until later.
//
// The two nested meters lose power on their own a second before the
// transformer does (their service cable burns): a concentrator power_on
// re-lights only the meters its power_off darkened, so they stay dark when
// A comes back, whatever order gridbell handles the last gasps in.
func faultA(a *area) []Step {
	nested := a.meters[len(a.meters)-nestedMeters:]
	back := a.meters[:len(a.meters)-nestedMeters]
	gasps := every(back, 3)
	oms := func(status string, etr time.Duration) *OMSPost {
		return &OMSPost{Seq: 1, Kind: "fault", Status: status, Areas: []string{a.name}, Cause: "cable fault", Start: atFaultA, ETR: etr}
	}
	return []Step{
		{At: atNestedOff, Name: "nested-off", Area: a.name, Event: "power_off", Signals: nested, Dark: nested,
			What: fmt.Sprintf("meters %s in %s lose power on their own (service cable burnt)", strings.Join(nested, ", "), a.name)},
		{At: atFaultA, Name: "fault-a", Area: a.name, Concentrator: a.conc, Event: "power_off", Signals: gasps, Dark: a.meters,
			What: fmt.Sprintf("fault in %s: concentrator %s last gasp, %d of %d meters' last gasps, readings stop", a.name, a.conc, len(gasps), len(back))},
		{At: atFaultA, Name: "oms-started", Area: a.name, OMS: oms("started", atFaultA+firstETR),
			What: fmt.Sprintf("OMS: fault started in %s, ETR +2h", a.name)},
		{At: atETRUpdate, Name: "oms-etr", Area: a.name, OMS: oms("etr_updated", atFaultA+firstETR+etrMove),
			What: fmt.Sprintf("OMS: ETR for %s moved by +1h", a.name)},
		{At: atRestoreA, Name: "restore-a", Area: a.name, Concentrator: a.conc, Event: "power_on", Signals: back, Lit: back,
			What: fmt.Sprintf("power back in %s except meters %s (nested outage)", a.name, strings.Join(nested, ", "))},
		{At: atOMSRestore, Name: "oms-restored", Area: a.name, OMS: oms("restored", atFaultA+firstETR+etrMove),
			What: fmt.Sprintf("OMS: %s restored", a.name)},
		{At: atNestedOn, Name: "nested-on", Area: a.name, Event: "power_on", Signals: nested, Lit: nested,
			What: fmt.Sprintf("nested outage in %s repaired: meters %s back", a.name, strings.Join(nested, ", "))},
	}
}

// blip is a momentary outage in B: it must send nothing.
func blip(b *area) []Step {
	m := b.meters[:min(blipMeters, len(b.meters)/2)]
	return []Step{
		{At: atBlipOff, Name: "blip-off", Area: b.name, Event: "power_off", Signals: m, Dark: m,
			What: fmt.Sprintf("momentary blip in %s: %d meters off", b.name, len(m))},
		{At: atBlipOff + blipLength, Name: "blip-on", Area: b.name, Event: "power_on", Signals: m, Lit: m,
			What: fmt.Sprintf("momentary blip in %s over after 10s: should send nothing", b.name)},
	}
}

// faultC is seen by meters only: the rules declare it after the momentary window.
func faultC(c *area) []Step {
	gasps := every(c.meters, 4)
	return []Step{
		{At: atFaultC, Name: "fault-c", Area: c.name, Concentrator: c.conc, Event: "power_off", Signals: gasps, Dark: c.meters,
			What: fmt.Sprintf("fault in %s seen by meters only: concentrator %s and %d meters' last gasps, no OMS", c.name, c.conc, len(gasps))},
		{At: atRestoreC, Name: "restore-c", Area: c.name, Concentrator: c.conc, Event: "power_on", Signals: c.meters, Lit: c.meters,
			What: fmt.Sprintf("power back in %s", c.name)},
	}
}

// every returns every n-th meter, starting with the first.
func every(meters []string, n int) []string {
	var out []string
	for i := 0; i < len(meters); i += n {
		out = append(out, meters[i])
	}
	return out
}
