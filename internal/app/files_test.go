package app_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
)

// TestDataDirIsPrivate: every directory gridbell makes under data_dir is
// 0700 and every file (store, WAL, broker state, outbox, contacts rejects)
// 0600, also an outbox file an older release left 0644: they hold phone
// numbers.
func TestDataDirIsPrivate(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	contactsFile := filepath.Join(dir, "contacts.csv")
	bad := "0100000099,Bad Row,,C-1,TA-1,F-1,G01,Wang,13900000001,resident,false,13812345699,zh\n" // no meter: rejected
	if err := os.WriteFile(contactsFile, []byte(contactsCSV+bad), 0o644); err != nil {
		t.Fatal(err)
	}
	// data_dir does not exist yet; the outbox file is elsewhere, from an
	// older release.
	if err := os.MkdirAll(filepath.Join(dir, "sms"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "sms", "outbox.jsonl")
	if err := os.WriteFile(old, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("", []string{
		"GRIDBELL_DATA_DIR=" + data,
		"GRIDBELL_CONTACTS_FILE=" + contactsFile,
		"GRIDBELL_HTTP_LISTEN=" + freePort(t),
		"GRIDBELL_MQTT_EMBEDDED_LISTEN=" + freePort(t),
		"GRIDBELL_SMS_OUTBOX_FILE=" + old,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "readiness", 30*time.Second, func() bool { return a.Ready() == nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s is %v, want %v", path, fi.Mode().Perm(), want)
		}
		seen[filepath.Base(path)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(old); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the outbox file an older release made 0644: %v, %v", fi.Mode(), err)
	}
	for _, f := range []string{"gridbell.db", "broker.db", "contacts-rejects.csv"} {
		if !seen[f] {
			t.Errorf("no %s in data_dir (%v): the test checks nothing of it", f, seen)
		}
	}
}
