package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// spool is the InfluxSink's queue of sealed batches (line protocol), oldest
// first: a few in memory, the rest in files <dir>/<seq>.lp up to a byte cap.
// A batch goes to memory only while no file is waiting, so every batch in
// memory is older than every file, and popping memory first, then files,
// keeps the order. On shutdown the memory batches are written out too, under
// their own (lower) sequence numbers, so the next run replays them first.
type spool struct {
	dir     string
	maxDisk int64
	maxMem  int

	mu        sync.Mutex // guards the fields below
	mem       []spoolBatch
	files     []spoolBatch // data nil: in the file
	diskBytes int64
	nextSeq   uint64
	ready     chan struct{} // cap 1: a batch was pushed
}

type spoolBatch struct {
	seq  uint64
	data []byte
	size int64
}

func (b spoolBatch) path(dir string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d.lp", b.seq))
}

// openSpool opens dir, taking over the files a previous run left.
func openSpool(dir string, maxDisk int64, maxMem int) (*spool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create influx spool: %w", err)
	}
	s := &spool{dir: dir, maxDisk: maxDisk, maxMem: maxMem, ready: make(chan struct{}, 1)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read influx spool: %w", err)
	}
	for _, e := range entries {
		seq, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".lp"), 10, 64)
		info, ierr := e.Info()
		if err != nil || ierr != nil || !strings.HasSuffix(e.Name(), ".lp") {
			continue
		}
		s.files = append(s.files, spoolBatch{seq: seq, size: info.Size()})
		s.diskBytes += info.Size()
		s.nextSeq = max(s.nextSeq, seq+1)
	}
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].seq < s.files[j].seq })
	return s, nil
}

// push queues data. It reports false when the disk cap leaves no room: the
// caller counts the batch as dropped.
func (s *spool) push(data []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := spoolBatch{seq: s.nextSeq, data: data, size: int64(len(data))}
	s.nextSeq++
	if len(s.files) == 0 && len(s.mem) < s.maxMem {
		s.mem = append(s.mem, b)
	} else {
		if s.diskBytes+b.size > s.maxDisk {
			return false, nil
		}
		if err := s.writeFile(b); err != nil {
			return false, err
		}
		s.files = append(s.files, spoolBatch{seq: b.seq, size: b.size})
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true, nil
}

// writeFile writes b whole or not at all. s.mu is held.
func (s *spool) writeFile(b spoolBatch) error {
	tmp := b.path(s.dir) + ".tmp"
	if err := os.WriteFile(tmp, b.data, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot spool influx batch: %w", err)
	}
	if err := os.Rename(tmp, b.path(s.dir)); err != nil {
		return fmt.Errorf("cannot spool influx batch: %w", err)
	}
	s.diskBytes += b.size
	return nil
}

// peek returns the oldest batch, or ok false when the spool is empty.
func (s *spool) peek() (b spoolBatch, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mem) > 0 {
		return s.mem[0], true, nil
	}
	if len(s.files) == 0 {
		return b, false, nil
	}
	b = s.files[0]
	b.data, err = os.ReadFile(b.path(s.dir))
	if err != nil {
		return b, false, fmt.Errorf("cannot read influx spool: %w", err)
	}
	return b, true, nil
}

// remove drops the batch peek returned, once it is written.
func (s *spool) remove(b spoolBatch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mem) > 0 && s.mem[0].seq == b.seq {
		s.mem[0] = spoolBatch{}
		s.mem = s.mem[1:]
		return nil
	}
	if len(s.files) > 0 && s.files[0].seq == b.seq {
		s.files = s.files[1:]
		s.diskBytes -= b.size
		if err := os.Remove(b.path(s.dir)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("cannot remove written influx batch: %w", err)
		}
	}
	return nil
}

// spill writes the memory batches to files, for the next run.
func (s *spool) spill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.mem) > 0 {
		b := s.mem[0]
		if err := s.writeFile(b); err != nil {
			return err
		}
		s.files = append([]spoolBatch{{seq: b.seq, size: b.size}}, s.files...)
		s.mem = s.mem[1:]
	}
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].seq < s.files[j].seq })
	return nil
}

// bytes returns the bytes waiting on disk.
func (s *spool) bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diskBytes
}
