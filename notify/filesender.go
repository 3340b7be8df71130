package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FileSender is the embedded default sender (docs/interfaces.md §4): every message
// becomes one JSON line of the outbox file. A Send returns only after its
// line is fsync'd; concurrent sends share one fsync (group commit).
type FileSender struct {
	mu      sync.Mutex // guards f, written, closed
	f       *os.File
	written uint64 // lines written
	closed  bool

	syncMu sync.Mutex // serialises fsync; guards synced
	synced uint64     // lines known to be on disk
}

// outboxLine is one line of the outbox file; field order is docs/interfaces.md §4's.
type outboxLine struct {
	ID       string `json:"id"`
	To       string `json:"to"`
	Account  string `json:"account"`
	Kind     string `json:"kind"`
	Ref      string `json:"ref"`
	Body     string `json:"body"`
	QueuedAt string `json:"queued_at"`
	SentAt   string `json:"sent_at"`
}

// timeLayout is RFC 3339 with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// OpenFileSender opens (creating it and its directory) the outbox file at path.
func OpenFileSender(path string) (*FileSender, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create outbox directory: %w", err)
	}
	// Full phone numbers: owner only, also for a file an older release
	// made 0644.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open outbox file: %w", err)
	}
	return &FileSender{f: f}, nil
}

// Send appends m to the file and waits until it is on disk.
func (s *FileSender) Send(ctx context.Context, m Message) (Result, error) {
	now := time.Now()
	line, err := json.Marshal(outboxLine{
		ID: m.ID, To: m.To, Account: m.Account, Kind: string(m.Kind), Ref: m.Ref, Body: m.Body,
		QueuedAt: m.QueuedAt.Format(timeLayout), SentAt: now.Format(timeLayout),
	})
	if err != nil {
		return Result{}, fmt.Errorf("cannot encode outbox line: %w", err)
	}
	line = append(line, '\n')
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Result{}, errClosed
	}
	if n, err := s.f.Write(line); err != nil {
		// A full disk takes part of a line: cut it off, or the retry
		// would follow a torn line that no reader can parse.
		if n > 0 {
			if st, serr := s.f.Stat(); serr == nil {
				s.f.Truncate(st.Size() - int64(n))
			}
		}
		s.mu.Unlock()
		return Result{}, fmt.Errorf("cannot append to outbox file: %w", err)
	}
	s.written++
	mine := s.written
	s.mu.Unlock()
	if err := s.syncUpTo(mine); err != nil {
		return Result{}, err
	}
	return Result{ProviderID: m.ID, SentAt: now}, nil
}

// syncUpTo returns once line n is on disk; one fsync covers every line
// written before it started.
func (s *FileSender) syncUpTo(n uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced >= n {
		return nil
	}
	s.mu.Lock()
	target, f := s.written, s.f
	s.mu.Unlock()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cannot fsync outbox file: %w", err)
	}
	s.synced = target
	return nil
}

// Close closes the file.
func (s *FileSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.f.Close()
}
