package rules

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/store"
)

// openDirectory imports a contacts CSV into the real registry on db.
func openDirectory(t testing.TB, db *store.DB, csvPath string) Directory {
	t.Helper()
	ctx := context.Background()
	reg, err := contacts.Open(ctx, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rejects bytes.Buffer
	sum, err := reg.Import(ctx, f, &rejects)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rejected > 0 {
		t.Fatalf("contacts import rejected %d rows:\n%s", sum.Rejected, rejects.String())
	}
	return reg
}
