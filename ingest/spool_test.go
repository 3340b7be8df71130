package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Batches come out oldest first, across memory, disk and a restart.
func TestSpoolOrder(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if ok, err := s.push([]byte(fmt.Sprintf("b%d\n", i))); !ok || err != nil {
			t.Fatalf("push %d = %v, %v", i, ok, err)
		}
	}
	take := func(s *spool, want string) spoolBatch {
		t.Helper()
		b, ok, err := s.take()
		if !ok || err != nil || string(b.data) != want {
			t.Fatalf("take = %q, %v, %v; want %q", b.data, ok, err, want)
		}
		return b
	}
	b0 := take(s, "b0\n")
	b1 := take(s, "b1\n") // two senders: b1 is written before b0
	if err := s.remove(b1); err != nil {
		t.Fatal(err)
	}
	s.release(b0) // b0's write failed at shutdown
	if _, err := s.spill(); err != nil {
		t.Fatal(err)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) == 0 {
		t.Fatal("nothing spilled to disk")
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("spool file %s: %v, %v; want 0600 (it holds meter readings)", f, fi.Mode(), err)
		}
	}

	s, err = openSpool(dir, 1<<20, 2) // the next run
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"b0\n", "b2\n", "b3\n", "b4\n", "b5\n"} {
		if err := s.remove(take(s, want)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := s.take(); ok || s.bytes() != 0 {
		t.Fatalf("spool not empty: %d bytes", s.bytes())
	}

	// The cap: a batch that does not fit on disk is refused.
	s, _ = openSpool(t.TempDir(), 10, 0)
	if ok, _ := s.push([]byte("0123456789\n")); ok {
		t.Fatal("an 11-byte batch fit a 10-byte spool")
	}
}
