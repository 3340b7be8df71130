package contacts

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"

	"github.com/gridbell/gridbell/internal/csvout"
)

// Encodings the reader detects.
const (
	EncodingUTF8    = "utf-8"
	EncodingGB18030 = "gb18030"
)

// peekSize is how much of an unseekable input is inspected to tell UTF-8
// from GB18030.
const peekSize = 1 << 20

// column indexes a contacts file's columns (docs/interfaces.md §3).
type column int

const (
	colAccount column = iota
	colName
	colMeter
	colConcentrator
	colArea
	colFeeder
	colGrid
	colManager
	colManagerPhone
	colClass
	colPrepaid
	colPhone
	colPhone2
	colLanguage
	colOptOut
	colAreaName
	numColumns
)

var columnNames = [numColumns]string{"account", "name", "meter", "concentrator", "area", "feeder", "grid",
	"manager", "manager_phone", "class", "prepaid", "phone", "phone2", "language", "opt_out",
	"area_name"}

var columnAliases = [numColumns]string{"户号", "户名", "表号", "集中器", "台区", "线路", "网格",
	"客户经理", "客户经理电话", "客户类别", "费控", "手机", "备用电话", "语言", "退订",
	"台区名称"}

var required = []column{colAccount, colMeter, colArea, colGrid}

// row is one customer (meter) row, validated and normalised: the form kept
// in the store and fed to the index builder.
type row struct {
	f       [numColumns]string // raw text of each column; class, prepaid, language, opt_out normalised
	prepaid bool
	optOut  bool
	retired bool
	class   Class
	seq     int32     // position in the import that last saw it
	sum     uint64    // fingerprint of f (set by builder.add): an unchanged row keeps it
	line    int32     // line in that file
	phones  []Contact // phone and phone2 cleaned, when done ahead of the builder
}

// clean cleans the row's phone fields into r.phones; an empty phone2 adds
// nothing.
func (r *row) clean() {
	r.phones = Clean(r.f[colPhone])
	if r.f[colPhone2] != "" {
		r.phones = append(r.phones, Clean(r.f[colPhone2])...)
	}
}

// reject is one problem found in a file, written as line,column,reason,raw.
type reject struct {
	line   int
	column string
	reason string
	raw    string
}

// fileReader reads a contacts file row by row.
type fileReader struct {
	csv      *csv.Reader
	cols     [numColumns]int // record index of each column, -1 when absent
	encoding string
	seq      int32
}

// newFileReader detects the encoding, reads the header and maps columns.
func newFileReader(src io.Reader) (*fileReader, error) {
	r, enc, err := decode(src)
	if err != nil {
		return nil, err
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("cannot read contacts header: %w", err)
	}
	if len(header) > 0 {
		// A GB18030 file may carry the BOM too (a UTF-8 file's was dropped).
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	fr := &fileReader{csv: cr, encoding: enc}
	if err := fr.mapColumns(header); err != nil {
		return nil, err
	}
	return fr, nil
}

// decode returns src as UTF-8 without BOM. A seekable input is checked
// whole; otherwise (a pipe) its first MiB decides.
func decode(src io.Reader) (io.Reader, string, error) {
	var utf utf8Check
	var err error
	if pos, ok := seekable(src); ok {
		if utf, err = scanUTF8(src); err == nil {
			if _, err = src.(io.Seeker).Seek(pos, io.SeekStart); err != nil {
				err = fmt.Errorf("cannot rewind contacts file: %w", err)
			}
		}
	} else if utf, err = peekUTF8(src); err == nil {
		src = io.MultiReader(bytes.NewReader(utf.peeked), src)
	}
	if err != nil {
		return nil, "", err
	}
	br := bufio.NewReaderSize(src, 64<<10)
	if !utf.ok {
		return transform.NewReader(br, simplifiedchinese.GB18030.NewDecoder()), EncodingGB18030, nil
	}
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	return br, EncodingUTF8, nil
}

// seekable reports whether src can be read twice, and where it is now. An
// *os.File on a pipe is a Seeker that fails.
func seekable(src io.Reader) (int64, bool) {
	s, ok := src.(io.Seeker)
	if !ok {
		return 0, false
	}
	pos, err := s.Seek(0, io.SeekCurrent)
	return pos, err == nil
}

// utf8Check tells a UTF-8 file from a GB18030 one. One bad byte does not
// make a UTF-8 file GB18030 (every Chinese name would be garbled): a file is
// UTF-8 when its bytes over 0x7F are almost all in valid UTF-8 runes, and
// its rows with an invalid byte are rejected one by one. A GB18030 file's
// Chinese makes invalid UTF-8 at nearly every character.
type utf8Check struct {
	ok      bool
	peeked  []byte
	runes   int // valid runes over 0x7F
	invalid int // invalid bytes
}

// utf8Tolerance is how many valid runes over 0x7F a UTF-8 file has at
// least for each invalid byte; utf8GiveUp invalid bytes beyond that settle
// it as GB18030 without reading on.
const (
	utf8Tolerance = 20
	utf8GiveUp    = 1000
)

// add counts b's runes; b holds whole runes unless more input follows.
func (u *utf8Check) add(b []byte, more bool) {
	if more {
		b = b[:len(b)-incompleteTail(b)]
	}
	if utf8.Valid(b) {
		for _, c := range b {
			if c >= 0xC0 { // a lead byte
				u.runes++
			}
		}
		return
	}
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n == 1:
			u.invalid++
		case n > 1:
			u.runes++
		}
		b = b[n:]
	}
}

// settled reports whether enough is known to call the input GB18030.
func (u *utf8Check) settled() bool {
	return u.invalid > utf8GiveUp && !u.utf8()
}

// utf8 reports whether the input counted so far is UTF-8.
func (u *utf8Check) utf8() bool {
	return u.invalid == 0 || u.runes >= utf8Tolerance*u.invalid
}

func peekUTF8(src io.Reader) (utf8Check, error) {
	buf := make([]byte, peekSize)
	n, err := io.ReadFull(src, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return utf8Check{}, fmt.Errorf("cannot read contacts file: %w", err)
	}
	buf = buf[:n]
	u := utf8Check{peeked: buf}
	u.add(buf, n == peekSize)
	u.ok = u.utf8()
	return u, nil
}

// scanUTF8 reads all of src in blocks and reports whether it is UTF-8.
func scanUTF8(src io.Reader) (utf8Check, error) {
	buf := make([]byte, 256<<10)
	carry := 0
	var u utf8Check
	for {
		n, err := io.ReadFull(src, buf[carry:])
		n += carry
		more := err == nil
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return utf8Check{}, fmt.Errorf("cannot read contacts file: %w", err)
		}
		u.add(buf[:n], more)
		if !more || u.settled() {
			u.ok = u.utf8()
			return u, nil
		}
		carry = copy(buf, buf[n-incompleteTail(buf[:n]):n])
	}
}

// incompleteTail is the length of a possibly cut rune at the end of b.
func incompleteTail(b []byte) int {
	for i := 1; i <= 3 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 { // a lead byte: cut if its rune needs more than i bytes
			if need := leadLen(c); need > i {
				return i
			}
			return 0
		}
	}
	return 0
}

func leadLen(c byte) int {
	switch {
	case c >= 0xF0:
		return 4
	case c >= 0xE0:
		return 3
	}
	return 2
}

func (fr *fileReader) mapColumns(header []string) error {
	for i := range fr.cols {
		fr.cols[i] = -1
	}
	for i, h := range header {
		if c, ok := lookupColumn(h); ok && fr.cols[c] < 0 {
			fr.cols[c] = i
		}
	}
	var missing []string
	for _, c := range required {
		if fr.cols[c] < 0 {
			missing = append(missing, columnNames[c])
		}
	}
	if missing != nil {
		return fmt.Errorf("cannot import contacts: header lacks %s: %w", strings.Join(missing, ", "), ErrMissingColumns)
	}
	return nil
}

func lookupColumn(h string) (column, bool) {
	h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
	h = strings.NewReplacer(" ", "_", "-", "_").Replace(h)
	for c := range numColumns {
		if h == columnNames[c] || h == columnAliases[c] {
			return c, true
		}
	}
	return 0, false
}

// next reads the next row. It returns io.EOF at the end; a bad row comes
// back as a reject with ok false.
func (fr *fileReader) next() (r row, rej reject, ok bool, err error) {
	rec, err := fr.csv.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return r, reject{line: pe.StartLine, reason: "rejected: " + pe.Err.Error()}, false, nil
		}
		return r, rej, false, err
	}
	line, _ := fr.csv.FieldPos(0)
	for c := range numColumns {
		if i := fr.cols[c]; i >= 0 && i < len(rec) {
			r.f[c] = strings.TrimSpace(csvout.Unquote(rec[i]))
		}
	}
	r.line = int32(line)
	if fr.encoding == EncodingUTF8 {
		for c := range r.f {
			if !utf8.ValidString(r.f[c]) {
				return r, reject{line: line, column: columnNames[c], reason: "rejected: invalid UTF-8 (the rest of the file is UTF-8)",
					raw: strings.ToValidUTF8(r.f[c], "\uFFFD")}, false, nil
			}
		}
	}
	if rej, bad := normalise(&r); bad {
		rej.line = line
		return r, rej, false, nil
	}
	r.seq = fr.seq
	fr.seq++
	return r, rej, true, nil
}

// normalise checks required fields and turns class, prepaid, language and
// opt_out into their canonical forms.
func normalise(r *row) (reject, bool) {
	for _, c := range required {
		if r.f[c] == "" {
			return reject{column: columnNames[c], reason: "rejected: missing " + columnNames[c]}, true
		}
	}
	var ok bool
	if r.class, ok = parseClass(r.f[colClass]); !ok {
		return badValue(r, colClass), true
	}
	if r.prepaid, ok = parseBool(r.f[colPrepaid]); !ok {
		return badValue(r, colPrepaid), true
	}
	if r.optOut, ok = parseBool(r.f[colOptOut]); !ok {
		return badValue(r, colOptOut), true
	}
	if r.f[colLanguage], ok = parseLanguage(r.f[colLanguage]); !ok {
		return badValue(r, colLanguage), true
	}
	r.f[colClass], r.f[colPrepaid], r.f[colOptOut] = string(r.class), flag(r.prepaid), flag(r.optOut)
	for c := range r.f {
		if strings.IndexByte(r.f[c], recordSep) >= 0 {
			r.f[c] = strings.ReplaceAll(r.f[c], string(recordSep), " ")
		}
	}
	return reject{}, false
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func badValue(r *row, c column) reject {
	return reject{column: columnNames[c], reason: "rejected: bad " + columnNames[c], raw: r.f[c]}
}

// classWords maps class values, English or Chinese, most specific first.
var classWords = []struct {
	word  string
	class Class
}{
	{"生命支持", LifeSupport}, {"高危", HighRisk}, {"重要", Important},
	{"工业", Industrial}, {"商业", Commercial}, {"居民", Resident},
}

func parseClass(s string) (Class, bool) {
	if s == "" {
		return Resident, true
	}
	switch c := Class(strings.ReplaceAll(strings.ToLower(s), " ", "_")); c {
	case Resident, Commercial, Industrial, Important, HighRisk, LifeSupport:
		return c, true
	}
	for _, w := range classWords {
		if strings.Contains(s, w.word) {
			return w.class, true
		}
	}
	return "", false
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "", "false", "否", "0", "n", "no", "f":
		return false, true
	case "true", "是", "1", "y", "yes", "t":
		return true, true
	}
	return false, false
}

func parseLanguage(s string) (string, bool) {
	l := strings.ToLower(s)
	switch {
	case l == "" || strings.HasPrefix(l, "zh") || s == "中文" || l == "chinese":
		return "zh", true
	case strings.HasPrefix(l, "en") || s == "英文" || s == "英语":
		return "en", true
	}
	return "", false
}

// rejectWriter writes the reject file: a CSV with line,column,reason,raw,
// through csvout, since its raw cells are whatever the file held.
type rejectWriter struct {
	w *csvout.Writer
}

func newRejectWriter(w io.Writer) *rejectWriter {
	if w == nil {
		return &rejectWriter{}
	}
	cw := csvout.NewWriter(w)
	cw.Write([]string{"line", "column", "reason", "raw"})
	return &rejectWriter{w: cw}
}

func (rw *rejectWriter) add(r reject) {
	if rw.w != nil {
		rw.w.Write([]string{fmt.Sprint(r.line), r.column, r.reason, r.raw})
	}
}

func (rw *rejectWriter) flush() error {
	if rw.w == nil {
		return nil
	}
	if err := rw.w.Flush(); err != nil {
		return fmt.Errorf("cannot write rejects: %w", err)
	}
	return nil
}
