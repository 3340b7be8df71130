package httpapi

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"

	"github.com/gridbell/gridbell/rules"
)

// formulaStarts are the first characters with which a spreadsheet takes a
// cell for a formula (or, for tab and carriage return, hides one).
const formulaStarts = "=+-@\t\r"

// sheetCell neutralises a CSV cell for spreadsheets (docs/interfaces.md §6): a cell
// that begins with =, +, -, @, a tab or a carriage return gets a leading
// ', so a customer named =HYPERLINK(…) is shown, never run.
func sheetCell(s string) string {
	if s != "" && strings.IndexByte(formulaStarts, s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// writeCSV writes a CSV answer: UTF-8 with a BOM (spreadsheets then show
// Chinese), every cell neutralised.
func writeCSV(w http.ResponseWriter, disposition string, header []string, rows func(yield func([]string))) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", disposition)
	w.Write([]byte("\xEF\xBB\xBF"))
	cw := csv.NewWriter(w)
	cw.Write(header)
	rows(func(rec []string) {
		for i := range rec {
			rec[i] = sheetCell(rec[i])
		}
		cw.Write(rec)
	})
	cw.Flush()
}

func writeCustomersCSV(w http.ResponseWriter, id string, list []rules.AffectedCustomer) {
	header := []string{"account", "name", "meter", "area", "grid", "class", "phones", "status", "powered"}
	writeCSV(w, csvDisposition(id), header, func(yield func([]string)) {
		for _, c := range list {
			yield([]string{c.Account, c.Name, c.Meter, c.Area, c.Grid, c.Class, strings.Join(c.Phones, " "), c.Status, strconv.FormatBool(c.Powered)})
		}
	})
}
