package ingest

import (
	"bytes"
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
// keeps the order. Senders take batches oldest first (two may be in flight
// at once, so they may complete out of order). On shutdown the memory batches are written out too, under
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
	seq   uint64
	data  []byte
	size  int64
	taken bool // a sender is writing it
}

func (b spoolBatch) path(dir string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d.lp", b.seq))
}

// openSpool opens dir, taking over the files a previous run left.
func openSpool(dir string, maxDisk int64, maxMem int) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create influx spool: %w", err)
	}
	s := &spool{dir: dir, maxDisk: maxDisk, maxMem: maxMem, ready: make(chan struct{}, 1)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read influx spool: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".lp.tmp") { // a write a crash cut short
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
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
	if err := os.WriteFile(tmp, b.data, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot spool influx batch: %w", err)
	}
	if err := os.Rename(tmp, b.path(s.dir)); err != nil {
		return fmt.Errorf("cannot spool influx batch: %w", err)
	}
	s.diskBytes += b.size
	return nil
}

// take returns the oldest batch no sender has taken, or ok false when
// there is none. The batch stays queued until remove, or release on failure.
func (s *spool) take() (b spoolBatch, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.mem {
		if !s.mem[i].taken {
			s.mem[i].taken = true
			return s.mem[i], true, nil
		}
	}
	for i := range s.files {
		if s.files[i].taken {
			continue
		}
		b = s.files[i]
		if b.data, err = os.ReadFile(b.path(s.dir)); err != nil {
			// An unreadable file would stop the queue for good: give it up.
			s.files = append(s.files[:i:i], s.files[i+1:]...)
			s.diskBytes -= b.size
			return b, false, fmt.Errorf("cannot read influx spool, batch of %d bytes lost: %w", b.size, err)
		}
		s.files[i].taken = true
		return b, true, nil
	}
	return b, false, nil
}

// release gives a batch back to the queue, for the next take.
func (s *spool) release(b spoolBatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range [][]spoolBatch{s.mem, s.files} {
		for i := range q {
			if q[i].seq == b.seq {
				q[i].taken = false
			}
		}
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// remove drops a batch take returned, once it is written.
func (s *spool) remove(b spoolBatch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.mem {
		if s.mem[i].seq == b.seq {
			s.mem = append(s.mem[:i:i], s.mem[i+1:]...)
			return nil
		}
	}
	for i := range s.files {
		if s.files[i].seq == b.seq {
			s.files = append(s.files[:i:i], s.files[i+1:]...)
			s.diskBytes -= b.size
			if err := os.Remove(b.path(s.dir)); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("cannot remove written influx batch: %w", err)
			}
			return nil
		}
	}
	return nil
}

// spill writes the memory batches to files, for the next run. Each batch
// the disk does not take is given up: spill reports how many lines (one a
// reading) went so, and the first error.
func (s *spool) spill() (lost int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.mem {
		if werr := s.writeFile(b); werr != nil {
			lost += bytes.Count(b.data, []byte{'\n'})
			if err == nil {
				err = werr
			}
			continue
		}
		s.files = append(s.files, spoolBatch{seq: b.seq, size: b.size})
	}
	clear(s.mem)
	s.mem = s.mem[:0]
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].seq < s.files[j].seq })
	return lost, err
}

// bytes returns the bytes of the batches queued on disk.
func (s *spool) bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diskBytes
}

// reconcile compares the queue with the directory: a queued file that is
// no longer there (removed by hand to free the disk) leaves the queue, so
// the queue's bytes are again what its files hold on disk. It returns the
// number and bytes of the batches it found gone.
func (s *spool) reconcile() (gone int, goneBytes int64, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot read influx spool: %w", err)
	}
	onDisk := make(map[string]bool, len(entries))
	for _, e := range entries {
		onDisk[e.Name()] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.files[:0]
	for _, b := range s.files {
		if !b.taken && !onDisk[filepath.Base(b.path(s.dir))] {
			gone++
			goneBytes += b.size
			s.diskBytes -= b.size
			continue
		}
		kept = append(kept, b)
	}
	clear(s.files[len(kept):])
	s.files = kept
	return gone, goneBytes, nil
}

// memLen returns how many batches wait in memory, taken ones included.
func (s *spool) memLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mem)
}
