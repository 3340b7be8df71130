// Package fleet generates a deterministic synthetic fleet of customers,
// meters, transformer areas, feeders and grids, and writes it as the
// marketing system's contacts file (docs/interfaces.md §3). The demo, `gridbell
// simulate` and the benchmarks use it; it stands outside the event flow.
package fleet

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"

	"github.com/gridbell/gridbell/internal/csvout"
)

// Options shape a fleet. Zero values get defaults: 1000 customers, one area
// per 200 customers, one grid per 25 areas.
type Options struct {
	Customers    int     // meters (rows of the contacts file)
	Areas        int     // transformer areas, one concentrator each
	Grids        int     // service grids
	Seed         int64   // the same seed gives the same fleet
	PrepaidShare float64 // share of prepaid meters, 0..1
	Messy        bool    // type phones the way clerks do; some opt-outs and English speakers
}

// Demo is the fleet `make run` shows and `gridbell simulate` plays by
// default: about 2,000 customers in 20 transformer areas and 4 grids, with
// messy phone numbers (deploy/demo/contacts.csv is its contacts file).
var Demo = Options{Customers: 2000, Areas: 20, Grids: 4, Seed: 20261126, PrepaidShare: 0.2, Messy: true}

// Customer is one row of the contacts file: one meter of an account.
type Customer struct {
	Account, Name, Meter, Concentrator, Area, Feeder, Grid, Manager, ManagerPhone, Class string
	Prepaid                                                                              bool
	Phone, Phone2, Language                                                              string
	OptOut                                                                               bool
	AreaName                                                                             string // the area's name (area_name)
}

// Fleet is a generated fleet. Areas and Concentrators are parallel: area i
// is behind concentrator i.
type Fleet struct {
	Customers     []Customer
	Areas         []string
	AreaNames     []string // parallel to Areas: each area's name, as a utility's CIS writes it
	Concentrators []string
	Grids         []string
}

// gen carries the random source and the fleet being built.
type gen struct {
	o   Options
	rng *rand.Rand
	f   *Fleet
	mgr []manager // per grid
}

type manager struct{ name, phone string }

// Generate builds a fleet from o. Area i is "TA-%04d" behind concentrator
// "C-%04d" (from 1), about ten areas share a feeder "F-%02d", and areas are
// split into grids "G%02d" in contiguous blocks.
func Generate(o Options) *Fleet {
	o = withDefaults(o)
	g := &gen{o: o, rng: rand.New(rand.NewPCG(uint64(o.Seed), 0x9e3779b97f4a7c15)), f: &Fleet{}}
	g.layout()
	g.customers()
	return g.f
}

func withDefaults(o Options) Options {
	if o.Customers <= 0 {
		o.Customers = 1000
	}
	if o.Areas <= 0 {
		o.Areas = max(1, o.Customers/200)
	}
	o.Areas = min(o.Areas, o.Customers)
	if o.Grids <= 0 {
		o.Grids = max(1, o.Areas/25)
	}
	o.Grids = min(o.Grids, o.Areas)
	o.PrepaidShare = min(max(o.PrepaidShare, 0), 1)
	return o
}

// areaPlaces name the demo's transformer areas: a residential compound or
// street, numbered, as a Chinese utility's registry names them.
var areaPlaces = []string{"幸福里", "和平路", "春晖苑", "东湖村", "滨江花园", "建设街", "明珠小区", "桂花巷", "新华路", "金桥村"}

// areaName is the name of area i (from 1); it draws no random numbers, so a
// seed gives the same fleet as before areas had names.
func areaName(i int) string {
	return fmt.Sprintf("%s%d号台区", areaPlaces[(i-1)%len(areaPlaces)], (i-1)/len(areaPlaces)+1)
}

func (g *gen) layout() {
	for i := 1; i <= g.o.Areas; i++ {
		g.f.Areas = append(g.f.Areas, fmt.Sprintf("TA-%04d", i))
		g.f.AreaNames = append(g.f.AreaNames, areaName(i))
		g.f.Concentrators = append(g.f.Concentrators, fmt.Sprintf("C-%04d", i))
	}
	for i := 1; i <= g.o.Grids; i++ {
		g.f.Grids = append(g.f.Grids, fmt.Sprintf("G%02d", i))
		g.mgr = append(g.mgr, manager{name: g.chineseName() + "(经理)", phone: g.mobile()})
	}
}

// customers fills the areas in order; about 8% of accounts get a second
// meter in the same area.
func (g *gen) customers() {
	n := g.o.Customers
	g.f.Customers = make([]Customer, 0, n)
	acct := 0
	for k := 0; k < n; k++ {
		area := k * g.o.Areas / n
		if k > 0 && g.rng.Float64() < 0.08 && (k-1)*g.o.Areas/n == area {
			g.f.Customers = append(g.f.Customers, g.secondMeter(k, g.f.Customers[k-1]))
			continue
		}
		acct++
		g.f.Customers = append(g.f.Customers, g.customer(k, acct, area))
	}
}

func accountID(n int) string { return fmt.Sprintf("01%08d", n) }

func meterID(k int) string { return "33" + fmt.Sprintf("%010d", 1_000_000+k*7) }

func (g *gen) customer(k, acct, area int) Customer {
	grid := area * g.o.Grids / g.o.Areas
	c := Customer{Account: accountID(acct), Meter: meterID(k), Area: g.f.Areas[area], AreaName: g.f.AreaNames[area], Concentrator: g.f.Concentrators[area],
		Feeder: fmt.Sprintf("F-%02d", area/10+1), Grid: g.f.Grids[grid], Manager: g.mgr[grid].name,
		ManagerPhone: g.mgr[grid].phone, Class: g.class(), Prepaid: g.rng.Float64() < g.o.PrepaidShare, Language: "zh"}
	c.Name = g.name(c.Class)
	c.Phone = g.mobile()
	if g.rng.Float64() < 0.12 {
		c.Phone2 = g.mobile()
	}
	if g.o.Messy {
		g.mess(&c)
	}
	return c
}

func (g *gen) secondMeter(k int, first Customer) Customer {
	c := first
	c.Meter = meterID(k)
	c.Prepaid = g.rng.Float64() < g.o.PrepaidShare
	return c
}

// class gives ~5% critical customers (important, high_risk, life_support).
func (g *gen) class() string {
	switch x := g.rng.Float64(); {
	case x < 0.025:
		return "important"
	case x < 0.04:
		return "high_risk"
	case x < 0.05:
		return "life_support"
	case x < 0.13:
		return "commercial"
	case x < 0.16:
		return "industrial"
	}
	return "resident"
}

var mobilePrefixes = []string{"130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152",
	"155", "156", "157", "158", "159", "166", "176", "177", "178", "180", "181", "182", "186", "187", "188", "189", "199"}

// mobile returns a clean Chinese mobile that is not a placeholder.
func (g *gen) mobile() string {
	for {
		n := g.rng.IntN(100_000_000)
		if n%11_111_111 != 0 {
			return mobilePrefixes[g.rng.IntN(len(mobilePrefixes))] + fmt.Sprintf("%08d", n)
		}
	}
}

func (g *gen) landline() string {
	codes := []string{"010", "021", "020", "0755", "0571", "0512", "028"}
	code := codes[g.rng.IntN(len(codes))]
	n := 8
	if len(code) == 4 && g.rng.IntN(3) == 0 {
		n = 7
	}
	return code + "-" + strconv.Itoa(2+g.rng.IntN(8)) + fmt.Sprintf("%0*d", n-1, g.rng.IntN(pow10(n-1)))
}

func pow10(n int) int {
	p := 1
	for range n {
		p *= 10
	}
	return p
}

// WriteCSV writes the fleet as a contacts file. With chineseHeaders the
// header uses the Chinese aliases and values are Chinese (居民, 是/否), as a
// Chinese spreadsheet export has them.
func (f *Fleet) WriteCSV(w io.Writer, chineseHeaders bool) error {
	cw := csvout.NewWriter(w)
	header := englishHeader
	if chineseHeaders {
		header = chineseHeader
	}
	cw.Write(header)
	rec := make([]string, len(header))
	for i := range f.Customers {
		f.Customers[i].record(rec, chineseHeaders)
		cw.Write(rec)
	}
	if err := cw.Flush(); err != nil {
		return fmt.Errorf("cannot write fleet contacts: %w", err)
	}
	return nil
}

var englishHeader = []string{"account", "name", "meter", "concentrator", "area", "feeder", "grid", "manager",
	"manager_phone", "class", "prepaid", "phone", "phone2", "language", "opt_out", "area_name"}

var chineseHeader = []string{"户号", "户名", "表号", "集中器", "台区", "线路", "网格", "客户经理", "客户经理电话",
	"客户类别", "费控", "手机", "备用电话", "语言", "退订", "台区名称"}

var chineseClass = map[string]string{"resident": "居民", "commercial": "商业", "industrial": "工业",
	"important": "重要", "high_risk": "高危", "life_support": "生命支持"}

func (c *Customer) record(rec []string, zh bool) {
	class, yes, no := c.Class, "true", "false"
	if zh {
		class, yes, no = chineseClass[c.Class], "是", "否"
	}
	b := func(v bool) string {
		if v {
			return yes
		}
		return no
	}
	copy(rec, []string{c.Account, c.Name, c.Meter, c.Concentrator, c.Area, c.Feeder, c.Grid, c.Manager,
		c.ManagerPhone, class, b(c.Prepaid), c.Phone, c.Phone2, c.Language, b(c.OptOut), c.AreaName})
}
