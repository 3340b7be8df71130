package sim

import (
	"strings"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/fleet"
)

// minAreaMeters is the smallest area the scenario plays in: a nested outage
// needs two meters that stay dark and some that come back.
const minAreaMeters = 4

// area is one transformer area of the fleet with its concentrator and meters.
type area struct {
	name, conc string
	meters     []string // in fleet order, each once
}

// cast indexes a fleet for the scenario: who plays which part.
type cast struct {
	f      *fleet.Fleet
	areas  []*area // areas in fleet order
	byName map[string]*area
}

func newCast(f *fleet.Fleet) *cast {
	c := &cast{f: f, byName: map[string]*area{}}
	for i, name := range f.Areas {
		conc := ""
		if i < len(f.Concentrators) {
			conc = f.Concentrators[i]
		}
		c.add(name, conc)
	}
	seen := map[string]bool{}
	for _, cu := range f.Customers {
		if cu.Meter == "" || seen[cu.Meter] {
			continue
		}
		seen[cu.Meter] = true
		a := c.add(cu.Area, cu.Concentrator)
		a.meters = append(a.meters, cu.Meter)
	}
	return c
}

// add returns the area called name, creating it when new. A customer row's
// concentrator wins over the fleet's list; an area without one gets the
// fleet's naming: TA-0007 → C-0007.
func (c *cast) add(name, conc string) *area {
	a := c.byName[name]
	if a == nil {
		a = &area{name: name}
		c.byName[name] = a
		c.areas = append(c.areas, a)
	}
	if a.conc == "" {
		a.conc = conc
	}
	if a.conc == "" {
		a.conc = "C-" + strings.TrimPrefix(name, "TA-")
	}
	return a
}

// area returns the i-th area large enough to play in, or nil.
func (c *cast) area(i int) *area {
	for _, a := range c.areas {
		if len(a.meters) < minAreaMeters {
			continue
		}
		if i == 0 {
			return a
		}
		i--
	}
	return nil
}

// stage reports whether meter-bearing area name has a part in the outage story.
func (c *cast) stage(name string) bool {
	for i := range 3 {
		if a := c.area(i); a != nil && a.name == name {
			return true
		}
	}
	return false
}

// prepaidMeter picks the prepaid customer whose balance falls: one outside
// the outage areas, with a single meter and a phone that can take an SMS.
func (c *cast) prepaidMeter() string {
	cu := c.pick(func(cu fleet.Customer) bool { return cu.Prepaid && c.meterCount(cu.Account) == 1 })
	if cu == nil {
		return ""
	}
	return cu.Meter
}

// arrearsAccount picks a postpaid customer outside the outage areas.
func (c *cast) arrearsAccount() string {
	cu := c.pick(func(cu fleet.Customer) bool { return !cu.Prepaid && cu.Account != "" })
	if cu == nil {
		return ""
	}
	return cu.Account
}

// pick returns the first customer outside the outage areas that passes ok,
// preferring one who can receive an SMS.
func (c *cast) pick(ok func(fleet.Customer) bool) *fleet.Customer {
	var fallback *fleet.Customer
	for i := range c.f.Customers {
		cu := &c.f.Customers[i]
		if cu.Meter == "" || c.stage(cu.Area) || !ok(*cu) {
			continue
		}
		if !cu.OptOut && (canSMS(cu.Phone) || canSMS(cu.Phone2)) {
			return cu
		}
		if fallback == nil {
			fallback = cu
		}
	}
	return fallback
}

func (c *cast) meterCount(account string) int {
	n := 0
	for _, cu := range c.f.Customers {
		if cu.Account == account {
			n++
		}
	}
	return n
}

// canSMS reports whether gridbell's cleaner finds a number in raw that can
// take an SMS.
func canSMS(raw string) bool {
	for _, c := range contacts.Clean(raw) {
		if c.Verdict.CanSMS() {
			return true
		}
	}
	return false
}
