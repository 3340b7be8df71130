package store

import "testing"

func TestValues(t *testing.T) {
	f := func(numbered bool, rows, cols int, want string) {
		t.Helper()
		if got := Values(numbered, rows, cols); got != want {
			t.Errorf("Values(%v, %d, %d) = %q, want %q", numbered, rows, cols, got, want)
		}
	}
	f(true, 2, 3, "($1,$2,$3),($4,$5,$6)")
	f(false, 2, 2, "(?,?),(?,?)")
	f(true, 1, 1, "($1)")
	f(true, 0, 3, "")
	if got := Marks(true, 2, 3); got != "$3,$4,$5" {
		t.Errorf("Marks(true, 2, 3) = %q", got)
	}
	if got := Marks(false, 0, 0); got != "" {
		t.Errorf("Marks(false, 0, 0) = %q", got)
	}
}
