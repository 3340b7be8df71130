// Command demogen writes the bundled demo contacts file that `make run`
// imports: a synthetic fleet with realistically messy phone numbers. The
// output is committed as deploy/demo/contacts.csv; rerun it only when the
// fleet generator changes:
//
//	go run ./internal/sim/cmd/demogen -o deploy/demo/contacts.csv
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	"github.com/gridbell/gridbell/internal/fleet"
)

func main() {
	out := flag.String("o", "deploy/demo/contacts.csv", "output file, - for stdout")
	customers := flag.Int("customers", 2000, "customers")
	areas := flag.Int("areas", 20, "transformer areas")
	grids := flag.Int("grids", 4, "service grids")
	seed := flag.Int64("seed", 20261126, "random seed; the bundled file uses the default")
	prepaid := flag.Float64("prepaid", 0.2, "share of prepaid customers; 0.2 matches `gridbell simulate`")
	zh := flag.Bool("zh", false, "Chinese column headers")
	flag.Parse()

	f := fleet.Generate(fleet.Options{Customers: *customers, Areas: *areas, Grids: *grids,
		Seed: *seed, PrepaidShare: *prepaid, Messy: true})
	if err := write(*out, f, *zh); err != nil {
		fmt.Fprintln(os.Stderr, "demogen:", err)
		os.Exit(1)
	}
}

func write(path string, f *fleet.Fleet, zh bool) error {
	w := os.Stdout
	if path != "-" {
		var err error
		if w, err = os.Create(path); err != nil {
			return fmt.Errorf("cannot create %s: %w", path, err)
		}
	}
	bw := bufio.NewWriter(w)
	if err := f.WriteCSV(bw, zh); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if w != os.Stdout {
		return w.Close()
	}
	return nil
}
