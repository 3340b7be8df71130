package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gridbell/gridbell/internal/csvout"
	"github.com/gridbell/gridbell/rules"
)

// writeCSV writes a CSV answer through csvout: UTF-8 with a BOM
// (spreadsheets then show Chinese), every cell neutralised.
func writeCSV(w http.ResponseWriter, disposition string, header []string, rows func(yield func([]string))) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", disposition)
	cw := csvout.NewWriter(w)
	cw.Write(header)
	rows(func(rec []string) { cw.Write(rec) })
	cw.Flush()
}

// writeCustomersCSV writes an outage's customer list; tags are the care
// tags of its customers (docs/interfaces.md §9).
func writeCustomersCSV(w http.ResponseWriter, id string, list []rules.AffectedCustomer, tags map[string][]string) {
	header := []string{"account", "name", "meter", "area", "grid", "class", "phones", "status", "powered", "tags"}
	writeCSV(w, csvDisposition("customers", id), header, func(yield func([]string)) {
		for _, c := range list {
			yield([]string{c.Account, c.Name, c.Meter, c.Area, c.Grid, c.Class, strings.Join(c.Phones, " "), c.Status, strconv.FormatBool(c.Powered),
				strings.Join(tags[c.Account], " ")})
		}
	})
}

func accountsOf(list []rules.AffectedCustomer) []string {
	out := make([]string, 0, len(list))
	for _, c := range list {
		out = append(out, c.Account)
	}
	return out
}
