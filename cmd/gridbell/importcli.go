package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/store"
)

// importContacts runs gridbell contacts import: it checks the file before
// it opens the store, shows a progress bar on a terminal, and prints a
// short summary to out.
func importContacts(ctx context.Context, out io.Writer, cfg *config.Config, log zerolog.Logger, file, rejects string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("cannot open contacts file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot open contacts file: %w", err)
	}
	if st.IsDir() {
		return fmt.Errorf("cannot import contacts: %s is a directory", file)
	}
	if rejects == "" {
		rejects = filepath.Join(cfg.DataDir, "contacts-rejects.csv")
	}
	// The store (SQLite's file, or nothing at all on PostgreSQL) does not
	// make these directories; the reject file needs them.
	for _, dir := range []string{cfg.DataDir, filepath.Dir(rejects)} {
		if err := os.MkdirAll(dir, 0o700); err != nil { // phone numbers: owner only
			return fmt.Errorf("cannot create %s: %w", dir, err)
		}
	}
	db, err := store.Open(ctx, cfg.Store, cfg.DataDir)
	if err != nil {
		return err
	}
	defer db.Close()
	reg, err := contacts.Open(ctx, db, log) // names itself "contacts"
	if err != nil {
		return err
	}
	rf, err := os.OpenFile(rejects, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) // names and phone numbers
	if err == nil {
		err = rf.Chmod(0o600) // a file an older release made 0644
	}
	if err != nil {
		return fmt.Errorf("cannot create reject file: %w", err)
	}
	defer rf.Close()
	var src io.Reader = f
	var bar *rowBar
	if isatty.IsTerminal(os.Stderr.Fd()) {
		bar = newRowBar(f, st.Size(), os.Stderr)
		src = bar
	}
	sum, err := reg.Import(ctx, src, rf)
	bar.finish()
	if cerr := rf.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cannot write reject file: %w", cerr)
	}
	if err != nil {
		if sum.Rejected > 0 {
			fmt.Fprintf(out, "%d rows refused: see %s\n", sum.Rejected, rejects)
		}
		return err
	}
	writeImportSummary(out, file, rejects, sum)
	return nil
}

// writeImportSummary prints what an import did, for people.
func writeImportSummary(out io.Writer, file, rejects string, s contacts.Summary) {
	fmt.Fprintf(out, "imported %d of %d rows from %s (%s) in %s\n", s.Imported, s.Rows, file, s.Encoding, s.Took.Round(time.Millisecond))
	fmt.Fprintf(out, "  meters: %d added, %d updated, %d unchanged, %d retired; %d active accounts\n",
		s.Added, s.Updated, s.Unchanged, s.Retired, s.Accounts)
	t := s.Report.Total
	fmt.Fprintf(out, "  phones: %d valid, %d fixed, %d landline only, %d invalid, %d missing, %d opted out (valid list rate %.1f%%)\n",
		t.Valid, t.Fixed, t.LandlineOnly, t.Invalid, t.Missing, t.OptedOut, 100*t.ValidListRate)
	if s.Rejected > 0 {
		fmt.Fprintf(out, "  %d rows refused; they and the accounts no SMS can reach are listed in %s\n", s.Rejected, rejects)
	} else {
		fmt.Fprintf(out, "  no rows refused; accounts no SMS can reach are listed in %s\n", rejects)
	}
	fmt.Fprintln(out, "  per grid: gridbell contacts check FILE, or GET /api/v1/contacts/quality")
}

// rowBar reads a contacts file and moves a progress bar by rows (lines),
// with the total estimated from the file size and the bytes a row took so
// far; the rate is its own (rows/s since the start), shown from the first
// second on: the bar's own read "0 rows/hr" in its first half second. Once
// the file is read the total is the rows read, so the bar stands at 100%
// while the import commits.
type rowBar struct {
	r           io.Reader
	bar         *progressbar.ProgressBar
	size, bytes int64
	rows        int64
	max         int64
	start, said time.Time
}

func newRowBar(r io.Reader, size int64, w io.Writer) *rowBar {
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("importing"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
	)
	return &rowBar{r: r, bar: bar, size: size, max: -1, start: time.Now()}
}

func (b *rowBar) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.bytes += int64(n)
	b.rows += int64(bytes.Count(p[:n], []byte{'\n'}))
	if b.rows == 0 {
		return n, err
	}
	if now := time.Now(); now.Sub(b.said) >= time.Second && now.Sub(b.start) >= time.Second {
		b.said = now
		b.bar.Describe(fmt.Sprintf("importing, %.0f rows/s", float64(b.rows)/now.Sub(b.start).Seconds()))
	}
	switch est := b.rows * b.size / b.bytes; {
	case errors.Is(err, io.EOF):
		b.bar.Describe("read; committing")
		b.max = b.rows
		b.bar.ChangeMax64(b.rows)
	case b.size > 0 && (b.rows >= b.max || est > b.max+b.max/50 || est < b.max-b.max/50):
		// an estimate stays above the rows read: at the total the bar
		// would count itself done
		b.max = max(est, b.rows+1)
		b.bar.ChangeMax64(b.max)
	}
	b.bar.Set64(b.rows)
	return n, err
}

// finish clears the bar (nil when there is none).
func (b *rowBar) finish() {
	if b != nil {
		b.bar.Clear()
	}
}
