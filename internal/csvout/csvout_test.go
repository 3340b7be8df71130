package csvout

import (
	"bytes"
	"slices"
	"testing"
)

func TestCell(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := Cell(in); got != want {
			t.Errorf("Cell(%q) = %q, want %q", in, got, want)
		}
	}
	f(`=HYPERLINK("http://evil.example","x")`, `'=HYPERLINK("http://evil.example","x")`)
	f("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0")
	f("-1+1", "'-1+1")
	f("@SUM(1)", "'@SUM(1)")
	f("\t=1", "'\t=1")
	f("\r=1", "'\r=1")
	f("王经理", "王经理")
	f("0100000001", "0100000001")
	f("", "")
	f("a=b", "a=b")
}

// TestWriter: the BOM first, every cell neutralised, the caller's record
// left as it was, and a file with the BOM even when nothing is written.
func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	rec := []string{"=1", "户名", "+86 138"}
	keep := slices.Clone(rec)
	w.Write([]string{"a", "b", "c"})
	w.Write(rec)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := BOM + "a,b,c\n'=1,户名,'+86 138\n"; b.String() != want {
		t.Errorf("wrote %q, want %q", b.String(), want)
	}
	if !slices.Equal(rec, keep) {
		t.Errorf("record changed to %q", rec)
	}
	var empty bytes.Buffer
	if err := NewWriter(&empty).Flush(); err != nil || empty.String() != BOM {
		t.Errorf("empty file = %q, %v; want the BOM alone", empty.String(), err)
	}
}
