package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

// TestRowBar: the import's bar never shows a frame before the first row
// (its rate read "0 rows/hr") and ends at 100% of the rows read, not where
// the estimate from the file size left it ("99% (1000001/1008412)").
func TestRowBar(t *testing.T) {
	var file strings.Builder
	file.WriteString("account,name,meter,area,grid,phone\n")
	for i := range 20000 {
		fmt.Fprintf(&file, "01%08d,客户%d,33%010d,TA-%d,G01,139%08d\n", i, i%7*1000, i, i%13, i)
	}
	var out bytes.Buffer
	// Short reads, as a slow disk gives: the estimate moves while reading.
	b := newRowBar(iotest.HalfReader(strings.NewReader(file.String())), int64(file.Len()), &out)
	if _, err := io.Copy(io.Discard, b); err != nil {
		t.Fatal(err)
	}
	frames := out.String()
	b.finish()
	if regexp.MustCompile(`\b0 rows/`).MatchString(frames) {
		t.Errorf("a frame shows a rate of 0 rows: %q", frames[:min(len(frames), 300)])
	}
	last := frames[strings.LastIndex(frames, "\r")+1:]
	if !strings.Contains(last, "100%") || !strings.Contains(last, "(20001/20001") {
		t.Errorf("the last frame = %q, want 100%% (20001/20001 rows)", last)
	}
}
