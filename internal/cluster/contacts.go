package cluster

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gridbell/gridbell/internal/store"
)

// ContactsLease names the lease an instance holds while it decides on,
// and makes, the import of its contacts_file at start: one at a time.
const ContactsLease = "cluster-contacts-import"

// ContactsFile identifies a contacts file by content and modification time.
type ContactsFile struct {
	SHA256   string
	Modified time.Time
	Instance string    // the instance that imported it (LastContactsFile)
	Imported time.Time // when (LastContactsFile)
}

// ReadContactsFile hashes the file at path.
func ReadContactsFile(path string) (ContactsFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return ContactsFile{}, fmt.Errorf("cannot read contacts_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ContactsFile{}, fmt.Errorf("cannot read contacts_file: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ContactsFile{}, fmt.Errorf("cannot read contacts_file: %w", err)
	}
	return ContactsFile{SHA256: hex.EncodeToString(h.Sum(nil)), Modified: fi.ModTime()}, nil
}

// LastContactsFile returns the contacts_file an instance imported at start
// last; ok is false when none has.
func LastContactsFile(ctx context.Context, db *store.DB) (f ContactsFile, ok bool, err error) {
	var mtime, imported int64
	err = db.QueryRowContext(ctx, `SELECT sha256, mtime, instance, imported FROM cluster_contacts_file WHERE id = 1`).
		Scan(&f.SHA256, &mtime, &f.Instance, &imported)
	if errors.Is(err, sql.ErrNoRows) {
		return ContactsFile{}, false, nil
	}
	if err != nil {
		return ContactsFile{}, false, fmt.Errorf("cannot read the cluster's last contacts_file: %w", err)
	}
	f.Modified, f.Imported = time.Unix(0, mtime), time.Unix(0, imported)
	return f, true, nil
}

// RecordContactsFile notes that instance imported f at start.
func RecordContactsFile(ctx context.Context, db *store.DB, f ContactsFile, instance string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO cluster_contacts_file (id, sha256, mtime, instance, imported) VALUES (1, $1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET sha256 = excluded.sha256, mtime = excluded.mtime, instance = excluded.instance, imported = excluded.imported`,
		f.SHA256, f.Modified.UnixNano(), instance, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("cannot record the contacts_file imported: %w", err)
	}
	return nil
}

// ShouldImport says whether a starting instance imports its contacts_file
// f, given the last one an instance imported at start (ok: there is one),
// and why not: the same file is imported already, or f is older than it (a
// stale copy on one machine must not roll every instance's contacts back).
func ShouldImport(f, last ContactsFile, ok bool) (bool, string) {
	switch {
	case !ok:
		return true, ""
	case f.SHA256 == last.SHA256:
		return false, "the cluster imported this file already"
	case !f.Modified.After(last.Modified):
		return false, "the file is not newer than the one the cluster imported last: importing it would roll the contacts back"
	}
	return true, ""
}
