package contacts

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/gridbell/gridbell/internal/fleet"
)

func fleetCSV(t testing.TB, o fleet.Options, zh bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := fleet.Generate(o).WriteCSV(&buf, zh); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// onlyReader hides a reader's Seek, as a pipe would.
type onlyReader struct{ io.Reader }

// TestGB18030Twin imports a Chinese-headed file as UTF-8, UTF-8 with BOM
// and GB18030, seekable and not, and wants the same registry from each.
func TestGB18030Twin(t *testing.T) {
	utf := fleetCSV(t, fleet.Options{Customers: 800, Areas: 8, Grids: 2, Seed: 11, PrepaidShare: 0.3, Messy: true}, true)
	gb, err := simplifiedchinese.GB18030.NewEncoder().Bytes(utf)
	if err != nil {
		t.Fatal(err)
	}
	if utf8.Valid(gb) {
		t.Fatal("the GB18030 twin is valid UTF-8: the test proves nothing")
	}
	want, wantSum := importedState(t, bytes.NewReader(utf))
	if wantSum.Encoding != EncodingUTF8 || wantSum.Imported != 800 {
		t.Fatalf("UTF-8 summary = %+v", wantSum)
	}
	twins := map[string]io.Reader{
		"bom":             bytes.NewReader(append([]byte("\ufeff"), utf...)),
		"gb18030":         bytes.NewReader(gb),
		"gb18030 no seek": onlyReader{bytes.NewReader(gb)},
		"gb18030 pipe":    pipeOf(t, gb), // an *os.File whose Seek fails
	}
	for name, src := range twins {
		got, sum := importedState(t, src)
		if name != "bom" && sum.Encoding != EncodingGB18030 {
			t.Errorf("%s: encoding %s", name, sum.Encoding)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: registry differs from the UTF-8 twin's", name)
		}
	}
	rep, err := Check(bytes.NewReader(gb))
	if err != nil || rep.Encoding != EncodingGB18030 || !reflect.DeepEqual(rep.Grids, wantSum.Report.Grids) {
		t.Errorf("Check(gb18030) = %+v, %v", rep, err)
	}
}

// TestOneBadByteKeepsUTF8 (issue 21): a UTF-8 file with one invalid byte
// in one name is still read as UTF-8, seekable or not: that row is
// rejected, naming the byte, and every other Chinese name is intact.
func TestOneBadByteKeepsUTF8(t *testing.T) {
	utf := fleetCSV(t, fleet.Options{Customers: 300, Areas: 3, Grids: 1, Seed: 5, Messy: true}, true)
	lines := bytes.Split(utf, []byte("\n"))
	target := bytes.Split(lines[10], []byte(","))[0] // the account of the 10th row
	cells := bytes.Split(lines[10], []byte(","))
	cells[1] = append(append([]byte{}, cells[1][:3]...), append([]byte{0xFF}, cells[1][3:]...)...) // a bad byte after the first character
	lines[10] = bytes.Join(cells, []byte(","))
	bad := bytes.Join(lines, []byte("\n"))
	if utf8.Valid(bad) {
		t.Fatal("the file is valid UTF-8: the test proves nothing")
	}
	want, _ := importedState(t, bytes.NewReader(utf))
	for name, src := range map[string]io.Reader{"seekable": bytes.NewReader(bad), "pipe": pipeOf(t, bad)} {
		r, _ := newRegistry(t, "sqlite")
		var rejects bytes.Buffer
		sum, err := r.Import(context.Background(), src, &rejects)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Encoding != EncodingUTF8 || sum.Rejected != 1 || !strings.Contains(rejects.String(), "invalid UTF-8") {
			t.Errorf("%s: summary %+v, rejects %q; want utf-8 and the one row rejected for invalid UTF-8", name, sum, rejects.String())
		}
		for _, a := range want.Accounts {
			got, ok := r.Account(a.Account)
			if a.Account == string(target) {
				continue // its row was rejected; its other meter may stand
			}
			if !ok || got.Name != a.Name {
				t.Errorf("%s: account %s name %q, want %q", name, a.Account, got.Name, a.Name)
				break
			}
		}
	}
}

func pipeOf(t *testing.T, data []byte) io.Reader {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.Write(data)
		w.Close()
	}()
	t.Cleanup(func() { r.Close() })
	return r
}

// registryState is everything the lookups answer for a fleet.
type registryState struct {
	Meters   []MeterInfo
	Accounts []Account
	Grids    []GridInfo
	Quality  Report
}

func importedState(t *testing.T, src io.Reader) (registryState, Summary) {
	t.Helper()
	r, _ := newRegistry(t, "sqlite")
	sum, err := r.Import(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st registryState
	ix := r.ix.Load()
	for m := range int32(ix.meters.len()) {
		mi, _ := r.Meter(ix.meters.get(m))
		st.Meters = append(st.Meters, mi)
	}
	for a := range int32(ix.accounts.len()) {
		acct, _ := r.Account(ix.accounts.get(a))
		st.Accounts = append(st.Accounts, acct)
	}
	for _, g := range r.Grids() {
		gi, _ := r.Grid(g)
		st.Grids = append(st.Grids, gi)
	}
	st.Quality = r.Quality("")
	return st, sum
}

// TestReportsAgree: the reject file, Check's report and Quality give the
// same figures for the same messy file.
func TestReportsAgree(t *testing.T) {
	file := fleetCSV(t, fleet.Options{Customers: 3000, Areas: 30, Grids: 3, Seed: 5, PrepaidShare: 0.2, Messy: true}, false)
	file = append(file, "0199999999,坏行,,C-0001,TA-0001,F-01,G01,,,居民,否,13812345678,,zh,否,\n"+
		"0199999998,坏行,339999999998,C-0001,TA-0001,F-01,G01,,,外星人,否,13812345678,,zh,否,\n"...)
	checked, err := Check(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newRegistry(t, "sqlite")
	var rejects bytes.Buffer
	sum, err := r.Import(context.Background(), bytes.NewReader(file), &rejects)
	if err != nil {
		t.Fatal(err)
	}
	quality := r.Quality("")
	if !reflect.DeepEqual(checked, sum.Report) {
		t.Errorf("Check = %+v\nImport = %+v", checked, sum.Report)
	}
	if !reflect.DeepEqual(checked.Grids, quality.Grids) || !reflect.DeepEqual(checked.Total, quality.Total) {
		t.Errorf("Check = %+v\nQuality = %+v", checked, quality)
	}
	if checked.Rejected != 2 || checked.Total.Rows != 3000 {
		t.Errorf("rejected %d rows of %d, want 2 of 3000", checked.Rejected, checked.Total.Rows)
	}
	fromRejects := countRejects(t, file, rejects.Bytes())
	for _, g := range checked.Grids {
		want := [3]int{g.Invalid, g.Missing, g.LandlineOnly}
		if got := fromRejects[g.Grid]; got != want {
			t.Errorf("grid %s: reject file counts invalid, missing, landline_only %v; report %v", g.Grid, got, want)
		}
	}
	if one := r.Quality("G02"); len(one.Grids) != 1 || one.Grids[0] != checked.Grids[1] || one.Total.Accounts != checked.Grids[1].Accounts {
		t.Errorf("Quality(G02) = %+v", one)
	}
	checkJSONNames(t, quality)
}

// countRejects counts the reject file's contact lines per grid and column
// (invalid, missing, landline_only), and checks its refused rows.
func countRejects(t *testing.T, file, rejects []byte) map[string][3]int {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(file)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(rejects)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][3]int{}
	refused := 0
	for _, rec := range recs[1:] {
		var line int
		if err := json.Unmarshal([]byte(rec[0]), &line); err != nil {
			t.Fatalf("reject line %q: %v", rec[0], err)
		}
		grid := rows[line-1][6]
		kind, _, _ := strings.Cut(rec[2], ":")
		n := out[grid]
		switch kind {
		case "invalid":
			n[0]++
		case "missing":
			n[1]++
		case "landline_only":
			n[2]++
		case "rejected":
			refused++
		default:
			t.Fatalf("reject reason %q", rec[2])
		}
		out[grid] = n
	}
	if refused != 2 {
		t.Errorf("%d refused rows in the reject file, want 2", refused)
	}
	return out
}

func checkJSONNames(t *testing.T, rep Report) {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"grid", "rows", "accounts", "valid", "fixed", "landline_only", "invalid", "missing",
		"opted_out", "valid_list_rate"} {
		if !strings.Contains(string(b), `"`+key+`":`) {
			t.Errorf("report JSON lacks %q: %s", key, b)
		}
	}
}

func TestReportWriters(t *testing.T) {
	rep, err := Check(strings.NewReader(firstFile))
	if err != nil {
		t.Fatal(err)
	}
	var text, csvOut bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteCSV(&csvOut); err != nil {
		t.Fatal(err)
	}
	wantCSV := "\ufeffgrid,manager,rows,accounts,valid,fixed,landline_only,invalid,missing,opted_out,valid_list_rate\n" +
		"G01,王经理,3,2,0,2,0,0,0,0,1.0000\n" +
		"G02,赵经理,2,2,1,0,0,1,0,1,0.5000\n" +
		"total,,5,4,1,2,0,1,0,1,0.7500\n"
	if csvOut.String() != wantCSV {
		t.Errorf("WriteCSV:\n%s\nwant:\n%s", csvOut.String(), wantCSV)
	}
	if !strings.Contains(text.String(), "75.0%") || !strings.Contains(text.String(), "rejected rows: 0") {
		t.Errorf("WriteText:\n%s", text.String())
	}
	// Columns line up on a terminal, where 王经理 takes six columns: every
	// column ends at the same display width on every line.
	lines := strings.Split(strings.TrimRight(text.String(), "\n"), "\n")
	ends := func(line string) []int {
		var out []int
		col := 0
		for i, r := range []rune(line) {
			col += displayWidth(string(r))
			if r != ' ' && (i+1 == len([]rune(line)) || []rune(line)[i+1] == ' ') {
				out = append(out, col)
			}
		}
		return out
	}
	head := ends(lines[0])
	for _, l := range lines[1:4] {
		if got := ends(l); !slices.Equal(got[len(got)-9:], head[len(head)-9:]) {
			t.Errorf("WriteText: columns of %q end at %v, the header's at %v", l, got, head)
		}
	}
	if displayWidth("王经理") != 6 || displayWidth("G01") != 3 {
		t.Errorf("displayWidth(王经理, G01) = %d, %d; want 6, 3", displayWidth("王经理"), displayWidth("G01"))
	}
}
