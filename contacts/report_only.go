package contacts

import "slices"

// Only returns the report cut to the given grids, with the total summed
// again over them: what a customer manager may see.
func (rep Report) Only(grids []string) Report {
	out := Report{Rejected: rep.Rejected, Encoding: rep.Encoding, Total: GridQuality{Grid: rep.Total.Grid}}
	for _, gq := range rep.Grids {
		if !slices.Contains(grids, gq.Grid) {
			continue
		}
		out.Grids = append(out.Grids, gq)
		t := &out.Total
		t.Rows += gq.Rows
		t.Accounts += gq.Accounts
		t.Valid += gq.Valid
		t.Fixed += gq.Fixed
		t.LandlineOnly += gq.LandlineOnly
		t.Invalid += gq.Invalid
		t.Missing += gq.Missing
		t.OptedOut += gq.OptedOut
	}
	out.Total = out.Total.withRate()
	return out
}
