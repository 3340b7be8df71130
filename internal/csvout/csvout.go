// Package csvout writes every CSV file gridbell hands to people: exports over
// HTTP, the contacts reject file, contact-quality reports and the demo
// contacts file. Managers open these in spreadsheets, so each file starts
// with a UTF-8 byte order mark (Excel then shows Chinese) and each cell that
// a spreadsheet would run as a formula is neutralised. It imports nothing of
// gridbell's, so every package may use it.
package csvout

import (
	"bufio"
	"encoding/csv"
	"io"
	"strings"
)

// BOM is the UTF-8 byte order mark every file starts with.
const BOM = "\xEF\xBB\xBF"

// formulaStarts are the first characters with which a spreadsheet takes a
// cell for a formula (=, +, -, @) or, for tab and carriage return, hides
// one behind them.
const formulaStarts = "=+-@\t\r"

// Cell neutralises one cell: a cell that begins with =, +, -, @, a tab or a
// carriage return gets a leading ', so a customer named =HYPERLINK(…) is
// shown, never run. Any other cell comes back as it is.
func Cell(s string) string {
	if s != "" && strings.IndexByte(formulaStarts, s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// Unquote undoes Cell for a file read back (the demo contacts file, a file
// a manager saved from one of ours): a ' followed by a formula start is
// dropped. Any other cell comes back as it is.
func Unquote(s string) string {
	if len(s) > 1 && s[0] == '\'' && strings.IndexByte(formulaStarts, s[1]) >= 0 {
		return s[1:]
	}
	return s
}

// Writer is a csv.Writer that writes the BOM first and neutralises every
// cell. It buffers; call Flush at the end and check its error.
type Writer struct {
	cw  *csv.Writer
	rec []string
}

// NewWriter returns a Writer on w. The BOM is written with the first Flush
// at the latest, so an empty file is still a file with the BOM.
func NewWriter(w io.Writer) *Writer {
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(BOM)
	return &Writer{cw: csv.NewWriter(bw)}
}

// Write writes one record, each cell neutralised. rec is not changed.
func (w *Writer) Write(rec []string) error {
	w.rec = w.rec[:0]
	for _, c := range rec {
		w.rec = append(w.rec, Cell(c))
	}
	return w.cw.Write(w.rec)
}

// Flush writes what is buffered and returns the first error of any Write
// or of the Flush.
func (w *Writer) Flush() error {
	w.cw.Flush()
	return w.cw.Error()
}
