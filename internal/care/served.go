package care

import "sync"

// servedCache counts the customers served per grid, feeder and area from
// the registry, once per registry generation: a province's ten million
// meters are walked once, not per report.
type servedCache struct {
	mu  sync.Mutex
	gen uint64
	ok  bool
	c   *served
}

// served are customers (distinct accounts) per (grid, key).
type served struct {
	grid, feeder, area map[cell]int
}

func (s *served) by(key string) map[cell]int {
	switch key {
	case "feeder":
		return s.feeder
	case "area":
		return s.area
	}
	return s.grid
}

// servedCounts returns the counts of the registry's current generation.
func (c *Care) servedCounts() *served {
	sc := &c.served
	sc.mu.Lock()
	defer sc.mu.Unlock()
	g := c.dir.Generation()
	if sc.ok && sc.gen == g {
		return sc.c
	}
	s := &served{grid: map[cell]int{}, feeder: map[cell]int{}, area: map[cell]int{}}
	for _, grid := range c.dir.Grids() {
		info, ok := c.dir.Grid(grid)
		if !ok {
			continue
		}
		accts := map[string]bool{}
		for _, a := range info.Areas {
			inArea := map[string]bool{}
			for _, m := range c.dir.AreaMeters(a) {
				mi, ok := c.dir.Meter(m)
				if !ok || mi.Account == "" || mi.Grid != grid || inArea[mi.Account] {
					continue
				}
				inArea[mi.Account] = true
				s.area[cell{grid, a}]++
				s.feeder[cell{grid, mi.Feeder}]++
				if !accts[mi.Account] {
					accts[mi.Account] = true
					s.grid[cell{grid, grid}]++
				}
			}
		}
	}
	sc.c, sc.gen, sc.ok = s, g, true
	return s
}
