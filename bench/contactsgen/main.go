// Command contactsgen writes a large, realistically messy contacts file
// (docs/interfaces.md §3) from internal/fleet, so anyone can repeat the contacts
// import benchmarks:
//
//	go run ./bench/contactsgen -n 1000000 -o /tmp/contacts-1m.csv
//	gridbell contacts check /tmp/contacts-1m.csv
//
// It also writes the bundled demo file, the fleet `gridbell run --demo` and
// `gridbell simulate` build:
//
//	go run ./bench/contactsgen -n 2000 -areas 20 -grids 4 -o deploy/demo/contacts.csv
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"

	"github.com/gridbell/gridbell/internal/fleet"
)

func main() {
	n := flag.Int("n", 100_000, "customers (rows)")
	areas := flag.Int("areas", 0, "transformer areas (default n/200)")
	grids := flag.Int("grids", 0, "service grids (default n/5000)")
	seed := flag.Int64("seed", fleet.Demo.Seed, "random seed: the same seed gives the same file")
	out := flag.String("o", "-", "output file (- for stdout)")
	zh := flag.Bool("zh", false, "Chinese headers and values, as a Chinese spreadsheet export")
	gb := flag.Bool("gb18030", false, "encode the file in GB18030 instead of UTF-8")
	clean := flag.Bool("clean", false, "clean phone numbers (default: typed the way clerks do)")
	flag.Parse()
	o := fleet.Options{Customers: *n, Areas: *areas, Grids: *grids, Seed: *seed, PrepaidShare: 0.2, Messy: !*clean}
	if o.Areas <= 0 {
		o.Areas = max(1, *n/200)
	}
	if o.Grids <= 0 {
		o.Grids = max(1, *n/5000)
	}
	if err := run(o, *out, *zh, *gb); err != nil {
		fmt.Fprintln(os.Stderr, "contactsgen:", err)
		os.Exit(1)
	}
}

func run(o fleet.Options, out string, zh, gb bool) error {
	f := fleet.Generate(o)
	var w io.Writer = os.Stdout
	if out != "-" {
		file, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("cannot create output: %w", err)
		}
		defer file.Close()
		w = file
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var enc io.WriteCloser = nopCloser{bw}
	if gb {
		enc = transform.NewWriter(bw, simplifiedchinese.GB18030.NewEncoder())
	}
	if err := f.WriteCSV(enc, zh); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("cannot encode output: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write output: %w", err)
	}
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
