package httpapi

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/gridbell/gridbell/contacts"
)

// ContactsImporter takes a new customer file (*contacts.Registry
// implements it): the same import as gridbell contacts import, for managers
// without shell access.
type ContactsImporter interface {
	Import(ctx context.Context, src io.Reader, rejects io.Writer) (contacts.Summary, error)
}

// maxContactsUpload caps POST /api/v1/contacts/import: a million-row
// export is about 200 MiB.
const maxContactsUpload = 1 << 30

// rejectsSample is how many lines of the reject file a refused import
// quotes, so that whoever posted it sees why without shell access.
const rejectsSample = 20

// importContacts answers POST /api/v1/contacts/import: the body is the CSV.
// It is spooled to a file under the data directory first, so a slow upload
// never holds the import's transaction (and the store) open, and the
// encoding is judged on the whole file. Bad rows go to the reject file
// there; the answer is the import's summary.
func (s *Server) importContacts(w http.ResponseWriter, r *http.Request) {
	if s.deps.Contacts == nil || s.deps.ContactsDir == "" {
		writeError(w, http.StatusServiceUnavailable, "contacts import is not available")
		return
	}
	src, err := s.spool(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("contacts file over %d bytes", tooBig.Limit))
			return
		}
		s.log.Warn().Err(err).Msg("cannot receive contacts file")
		writeError(w, http.StatusInternalServerError, "cannot receive contacts file")
		return
	}
	defer os.Remove(src.Name())
	defer src.Close()
	rejects := filepath.Join(s.deps.ContactsDir, "contacts-rejects.csv")
	rf, err := os.CreateTemp(s.deps.ContactsDir, "contacts-rejects-*.csv")
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot create contacts reject file")
		writeError(w, http.StatusInternalServerError, "cannot create reject file")
		return
	}
	defer os.Remove(rf.Name()) // a no-op once renamed
	defer rf.Close()
	sum, err := s.deps.Contacts.Import(r.Context(), src, rf)
	if err != nil {
		s.refuseImport(w, err, sum, rf)
		return
	}
	if err := os.Rename(rf.Name(), rejects); err != nil {
		s.log.Warn().Err(err).Msg("cannot keep contacts reject file")
	}
	s.log.Info().Int("rows", sum.Rows).Int("rejected", sum.Rejected).Int("added", sum.Added).
		Int("retired", sum.Retired).Str("rejects", rejects).Msg("contacts imported over http")
	writeJSON(w, 200, sum)
}

// spool copies the request body to a temporary file and rewinds it.
func (s *Server) spool(w http.ResponseWriter, r *http.Request) (*os.File, error) {
	f, err := os.CreateTemp(s.deps.ContactsDir, "contacts-upload-*.csv")
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(f, http.MaxBytesReader(w, r.Body, maxContactsUpload))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// refuseImport answers a failed import: 400 with the reason for a file
// that cannot be imported, 500 for the store's failures. The registry is
// left as it was either way.
func (s *Server) refuseImport(w http.ResponseWriter, err error, sum contacts.Summary, rejects *os.File) {
	var parse *csv.ParseError
	bad := errors.Is(err, contacts.ErrNoRows) || errors.Is(err, contacts.ErrMissingColumns) ||
		errors.Is(err, io.EOF) || errors.As(err, &parse)
	if !bad {
		s.log.Error().Err(err).Msg("cannot import contacts over http")
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	body := map[string]any{"error": err.Error()}
	if errors.Is(err, contacts.ErrNoRows) {
		body["rows"], body["rejected"] = sum.Rows, sum.Rejected
		body["rejects"] = sampleRejects(rejects)
	}
	writeJSON(w, http.StatusBadRequest, body)
}

// sampleRejects returns the first lines of a reject file.
func sampleRejects(f *os.File) [][]string {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil
	}
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	var out [][]string
	for len(out) < rejectsSample {
		rec, err := cr.Read()
		if err != nil {
			break
		}
		out = append(out, rec)
	}
	return out
}
