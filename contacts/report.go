package contacts

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/text/width"

	"github.com/gridbell/gridbell/internal/csvout"
)

// Report is the contact quality of a file or of the stored registry, per
// service grid (issue 3, docs/interfaces.md §6). Accounts are counted once, in the grid
// of their first meter, in the best column their numbers reach: valid, fixed,
// landline_only, invalid or missing; these five add up to accounts. OptedOut
// counts accounts whose SMS-capable numbers have all opted out (they are in
// valid or fixed too). ValidListRate is (valid+fixed)/accounts.
type Report struct {
	Grids    []GridQuality `json:"grids"`
	Total    GridQuality   `json:"total"`
	Rejected int           `json:"rejected"`           // rows refused (Check and Import only)
	Encoding string        `json:"encoding,omitempty"` // of the file (Check and Import only)
}

// GridQuality is one row of a Report.
type GridQuality struct {
	Grid          string  `json:"grid"`
	Manager       string  `json:"manager,omitempty"`
	Rows          int     `json:"rows"` // active customers (meters)
	Accounts      int     `json:"accounts"`
	Valid         int     `json:"valid"`
	Fixed         int     `json:"fixed"`
	LandlineOnly  int     `json:"landline_only"`
	Invalid       int     `json:"invalid"`
	Missing       int     `json:"missing"`
	OptedOut      int     `json:"opted_out"`
	ValidListRate float64 `json:"valid_list_rate"`
}

// Check reads a contacts file and reports its quality per grid. It stores
// nothing.
func Check(src io.Reader) (Report, error) {
	fr, err := newFileReader(src)
	if err != nil {
		return Report{}, err
	}
	b := newBuilder(1024)
	var sum Summary
	if err := readRows(fr, b, newRejectWriter(nil), &sum, nil); err != nil {
		return Report{}, err
	}
	rep := b.freeze().report()
	rep.Rejected, rep.Encoding = sum.Rejected, fr.encoding
	return rep, nil
}

// Quality reports the stored registry's contact quality for one grid, or
// for all grids when grid is empty. Verdicts from the SMS provider and
// opt-outs received since the import count.
func (r *Registry) Quality(grid string) Report {
	full := r.ix.Load().cachedReport()
	if grid == "" {
		return full
	}
	return full.Only([]string{grid})
}

// cachedQuality is a report of all grids and the phone-state version it
// was counted at.
type cachedQuality struct {
	version uint64
	report  Report
}

// cachedReport returns the report of all grids, counted again only after a
// phone state has changed: counting walks every account.
func (ix *index) cachedReport() Report {
	v := ix.stateVersion.Load()
	if c := ix.qualityCache.Load(); c != nil && c.version == v {
		return c.report.clone()
	}
	rep := ix.report()
	ix.qualityCache.Store(&cachedQuality{version: v, report: rep})
	return rep.clone()
}

func (rep Report) clone() Report {
	rep.Grids = slices.Clone(rep.Grids)
	return rep
}

// acctQuality is the report column an account falls in.
type acctQuality struct {
	bucket   Verdict // Landline stands for landline_only
	reason   string
	optedOut bool
}

func bucketName(v Verdict) string {
	if v == Landline {
		return "landline_only"
	}
	return string(v)
}

func (ix *index) quality(a int32) acctQuality {
	q := acctQuality{bucket: Missing, reason: reasonEmpty}
	sms, out := 0, 0
	for i := ix.acctContactOff[a]; i < ix.acctContactOff[a+1]; i++ {
		c := ix.contact(i)
		if verdictCode(c.Verdict) < verdictCode(q.bucket) { // codes run best to worst
			q.bucket, q.reason = c.Verdict, c.Reason
		}
		if c.Verdict.CanSMS() {
			sms++
			if c.OptOut {
				out++
			}
		}
	}
	q.optedOut = sms > 0 && out == sms
	return q
}

// report counts active customers per grid.
func (ix *index) report() Report {
	rows := make([]GridQuality, ix.grids.len())
	for g := range rows {
		rows[g].Grid, rows[g].Manager = ix.grids.get(int32(g)), ix.gridInfo[g].Manager
	}
	for i := range ix.meter {
		if m := &ix.meter[i]; !m.flag(flagRetired) {
			rows[m.grid].Rows++
		}
	}
	for a := range int32(len(ix.acct)) {
		if !ix.acct[a].retired {
			first := ix.acctMeters[ix.acctMeterOff[a]]
			rows[ix.meter[first].grid].add(ix.quality(a))
		}
	}
	rep := Report{Grids: []GridQuality{}}
	for _, gq := range rows {
		if gq.Rows > 0 {
			rep.Grids = append(rep.Grids, gq.withRate())
			rep.Total.sum(gq)
		}
	}
	slices.SortFunc(rep.Grids, func(a, b GridQuality) int { return cmp.Compare(a.Grid, b.Grid) })
	rep.Total.Grid = "total"
	rep.Total = rep.Total.withRate()
	return rep
}

func (gq *GridQuality) add(q acctQuality) {
	gq.Accounts++
	switch q.bucket {
	case Valid:
		gq.Valid++
	case Fixed:
		gq.Fixed++
	case Landline:
		gq.LandlineOnly++
	case Invalid:
		gq.Invalid++
	default:
		gq.Missing++
	}
	if q.optedOut {
		gq.OptedOut++
	}
}

func (gq *GridQuality) sum(o GridQuality) {
	gq.Rows += o.Rows
	gq.Accounts += o.Accounts
	gq.Valid += o.Valid
	gq.Fixed += o.Fixed
	gq.LandlineOnly += o.LandlineOnly
	gq.Invalid += o.Invalid
	gq.Missing += o.Missing
	gq.OptedOut += o.OptedOut
}

func (gq GridQuality) withRate() GridQuality {
	if gq.Accounts > 0 {
		gq.ValidListRate = math.Round(float64(gq.Valid+gq.Fixed)/float64(gq.Accounts)*10000) / 10000
	}
	return gq
}

var reportHeader = []string{"grid", "manager", "rows", "accounts", "valid", "fixed", "landline_only",
	"invalid", "missing", "opted_out", "valid_list_rate"}

func (gq GridQuality) fields(rate string) []string {
	return []string{gq.Grid, gq.Manager, strconv.Itoa(gq.Rows), strconv.Itoa(gq.Accounts), strconv.Itoa(gq.Valid),
		strconv.Itoa(gq.Fixed), strconv.Itoa(gq.LandlineOnly), strconv.Itoa(gq.Invalid), strconv.Itoa(gq.Missing),
		strconv.Itoa(gq.OptedOut), rate}
}

// WriteText writes the report as an aligned table for a terminal, each
// column right-aligned by display width: a Chinese character takes two
// columns of a terminal (text/tabwriter counts it as one, and a manager
// named 王经理 pushed the columns after it out of line).
func (rep Report) WriteText(w io.Writer) error {
	rows := [][]string{reportHeader}
	for _, gq := range append(slices.Clone(rep.Grids), rep.Total) {
		rows = append(rows, gq.fields(fmt.Sprintf("%.1f%%", gq.ValidListRate*100)))
	}
	widths := make([]int, len(reportHeader))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], displayWidth(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(strings.Repeat(" ", widths[i]-displayWidth(c)))
			b.WriteString(c)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "rejected rows: %d\n", rep.Rejected)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("cannot write contacts report: %w", err)
	}
	return nil
}

// displayWidth is the columns s takes on a terminal: two for each wide or
// fullwidth East Asian character, one for any other.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch width.LookupRune(r).Kind() {
		case width.EastAsianWide, width.EastAsianFullwidth:
			n += 2
		default:
			n++
		}
	}
	return n
}

// WriteCSV writes the report as CSV, one line per grid and a total line,
// for managers who work in spreadsheets (through csvout: a grid's manager
// comes from the file and may be named =MGR()).
func (rep Report) WriteCSV(w io.Writer) error {
	cw := csvout.NewWriter(w)
	cw.Write(reportHeader)
	for _, gq := range append(slices.Clone(rep.Grids), rep.Total) {
		cw.Write(gq.fields(strconv.FormatFloat(gq.ValidListRate, 'f', 4, 64)))
	}
	if err := cw.Flush(); err != nil {
		return fmt.Errorf("cannot write contacts report: %w", err)
	}
	return nil
}
