package main

import (
	"bytes"
	"encoding/csv"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridbell/gridbell/internal/csvout"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// hostileContacts has a manager and four bad classes that a spreadsheet
// would run as formulas.
const hostileContacts = "户号,表号,台区,网格,手机,客户经理,客户类别\n" +
	"0100000001,330000000001,TA-1,G01,13812345678,=MGR(),居民\n" +
	"0100000002,330000000002,TA-1,G01,13812345679,=MGR(),\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\"\n" +
	"0100000003,330000000003,TA-1,G01,13812345670,=MGR(),+cmd|' /C calc'!A0\n" +
	"0100000004,330000000004,TA-1,G01,13812345671,=MGR(),-1+1\n" +
	"0100000005,330000000005,TA-1,G01,13812345672,=MGR(),@bad\n"

// TestEveryCSVIsSafe walks every CSV gridbell writes from the command
// line — the reject file of `contacts import`, `contacts check --format
// csv` and the contacts file of `simulate` — and wants each to start with
// the BOM and to hold no cell a spreadsheet would run. The HTTP exports
// are walked by internal/app's TestBadInput and internal/httpapi's matrix.
// It also wants no package to write CSV but through csvout, so a new
// writer cannot bypass it.
func TestEveryCSVIsSafe(t *testing.T) {
	dir := t.TempDir()
	sc := storetest.Config(t, "sqlite")
	t.Setenv("GRIDBELL_DATA_DIR", dir)
	t.Setenv("GRIDBELL_STORE_DRIVER", sc.Driver)
	t.Setenv("GRIDBELL_STORE_DSN", sc.DSN)
	f := filepath.Join(dir, "hostile.csv")
	os.WriteFile(f, []byte(hostileContacts), 0o600)

	if out, err := execute(t, "contacts", "import", f); err != nil {
		t.Fatalf("contacts import: %v\n%s", err, out)
	}
	rejects, _ := os.ReadFile(filepath.Join(dir, "contacts-rejects.csv"))
	wantSafe(t, "contacts-rejects.csv", rejects, 4)

	out, err := execute(t, "contacts", "check", "--format", "csv", f)
	if err != nil {
		t.Fatalf("contacts check: %v", err)
	}
	wantSafe(t, "contacts check --format csv", []byte(out), 1)

	sim := filepath.Join(dir, "sim.csv")
	if out, err := execute(t, "simulate", "--customers", "50", "--broker", "-", "--contacts", sim); err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	demo, _ := os.ReadFile(sim)
	wantSafe(t, "simulate's contacts file", demo, -1)

	for _, file := range writersOfCSV(t) {
		t.Errorf("%s writes CSV with encoding/csv; use internal/csvout", file)
	}
}

// wantSafe checks one CSV: a BOM, and no cell beginning with a formula
// character; neutralised counts the cells with a ' before one (-1: any
// number).
func wantSafe(t *testing.T, name string, b []byte, neutralised int) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte(csvout.BOM)) {
		t.Errorf("%s does not start with the BOM: %.40q", name, b)
	}
	rows, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte(csvout.BOM)))).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, b)
	}
	n := 0
	for _, r := range rows {
		for _, cell := range r {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("%s: cell %q would run in a spreadsheet", name, cell)
			}
			if len(cell) > 1 && cell[0] == '\'' && strings.ContainsRune("=+-@", rune(cell[1])) {
				n++
			}
		}
	}
	if neutralised >= 0 && n != neutralised {
		t.Errorf("%s: %d neutralised cells, want %d:\n%s", name, n, neutralised, b)
	}
}

// writersOfCSV lists the repository's non-test files that call
// csv.NewWriter, other than csvout's own.
func writersOfCSV(t *testing.T) []string {
	t.Helper()
	root := filepath.Join("..", "..")
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			strings.Contains(filepath.ToSlash(path), "internal/csvout/") {
			return err
		}
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "NewWriter" {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "csv" {
					found = append(found, path)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
