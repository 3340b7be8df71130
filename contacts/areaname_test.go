package contacts

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/gridbell/gridbell/internal/store/storetest"
)

// withAreaNames adds an area-name column, headed head, to firstFile: TA-0001
// and TA-0002 named, TA-0003 left blank.
func withAreaNames(head string) string {
	names := map[string]string{"TA-0001": "幸福里小区1号台区", "TA-0002": "Riverside No.2"}
	lines := strings.Split(strings.TrimSuffix(firstFile, "\n"), "\n")
	lines[0] += "," + head
	for i := 1; i < len(lines); i++ {
		for code, name := range names {
			if strings.Contains(lines[i], ","+code+",") {
				lines[i] += "," + name
			}
		}
		if !strings.Contains(lines[i], ",TA-0001,") && !strings.Contains(lines[i], ",TA-0002,") {
			lines[i] += ","
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// TestAreaNames imports contacts with the area-name column, under its
// English header in UTF-8 and its Chinese one in GB18030, and without it:
// the registry and a registry reopened from the store name the areas the
// file names, and a file without the column imports as before.
func TestAreaNames(t *testing.T) {
	gb, err := simplifiedchinese.GB18030.NewEncoder().String(strings.ReplaceAll(withAreaNames("台区名称"), "account,name,meter,concentrator,area,", "户号,户名,表号,集中器,台区,"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"TA-0001": "幸福里小区1号台区", "TA-0002": "Riverside No.2", "TA-0003": "", "TA-9999": ""}
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			for name, file := range map[string]string{"area_name utf-8": withAreaNames("area_name"), "台区名称 gb18030": gb} {
				t.Run(name, func(t *testing.T) {
					r, db := newRegistry(t, driver)
					sum, rej := mustImport(t, r, file)
					if sum.Imported != 5 || sum.Rejected != 0 {
						t.Fatalf("summary = %+v, rejects %q", sum, rej)
					}
					for _, reg := range []*Registry{r, reopen(t, db)} {
						for code, n := range want {
							if got := reg.AreaName(code); got != n {
								t.Errorf("AreaName(%s) = %q, want %q", code, got, n)
							}
						}
						checkLookups(t, reg)
					}
					// The same rows without the column: the names go, the rows
					// count as updated.
					sum, _ = mustImport(t, r, firstFile)
					if sum.Updated != 4 || sum.Unchanged != 1 {
						t.Errorf("import without the column: summary = %+v, want 4 updated, 1 unchanged", sum)
					}
					if got := r.AreaName("TA-0001"); got != "" {
						t.Errorf("AreaName(TA-0001) after a file without names = %q", got)
					}
				})
			}
			t.Run("no column", func(t *testing.T) {
				r, _ := newRegistry(t, driver)
				if sum, _ := mustImport(t, r, firstFile); sum.Imported != 5 || sum.Rejected != 0 {
					t.Fatalf("summary = %+v", sum)
				}
				for code := range want {
					if got := r.AreaName(code); got != "" {
						t.Errorf("AreaName(%s) = %q, want none", code, got)
					}
				}
				checkLookups(t, r)
			})
		})
	}
}

// TestAreaNameMigration stores customers as a gridbell before the
// area-name column did, then opens the registry: its migration keeps every
// stored customer readable, and re-importing the same file changes nothing.
func TestAreaNameMigration(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, driver)
			ms := migrationsFor(db.Driver())
			if err := db.Migrate(ctx, "contacts", ms[:len(ms)-1]); err != nil {
				t.Fatal(err)
			}
			var rows []string
			for _, l := range strings.Split(strings.TrimSpace(firstFile), "\n")[1:] {
				f := strings.Split(l, ",")
				rows = append(rows, f[2])
				if _, err := db.ExecContext(ctx, `INSERT INTO contacts_customers (meter, account, grid, record, retired, seq, line, import_id)
					VALUES ($1, $2, $3, $4, 0, $5, $6, 1)`, f[2], f[0], f[6], strings.Join(f, "\x1f"), len(rows), len(rows)+1); err != nil {
					t.Fatal(err)
				}
			}
			r, err := Open(ctx, db, zerolog.Nop())
			if err != nil {
				t.Fatalf("Open on a store of the old shape: %v", err)
			}
			if r.Len() != len(rows) {
				t.Fatalf("Len() = %d, want %d", r.Len(), len(rows))
			}
			if got := r.AreaName("TA-0001"); got != "" {
				t.Errorf("AreaName(TA-0001) = %q, want none", got)
			}
			eq(t, "AreaMeters(TA-0002)", r.AreaMeters("TA-0002"), []string{"330000000003", "330000000004"})
		})
	}
}
