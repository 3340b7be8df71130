package contacts

import "slices"

// Only returns the report cut to the given grids, with the total summed
// again over them: what a customer manager may see.
func (rep Report) Only(grids []string) Report {
	out := Report{Grids: []GridQuality{}, Rejected: rep.Rejected, Encoding: rep.Encoding, Total: GridQuality{Grid: rep.Total.Grid}}
	for _, gq := range rep.Grids {
		if !slices.Contains(grids, gq.Grid) {
			continue
		}
		out.Grids = append(out.Grids, gq)
		out.Total.sum(gq)
	}
	out.Total = out.Total.withRate()
	return out
}
