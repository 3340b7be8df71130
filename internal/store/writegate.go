package store

import "sync"

// writeGate orders the write transactions of one process on SQLite, which
// has a single writer: a writer that finds SQLite's lock taken sleeps in
// its busy handler, up to 100 ms at a time, and meanwhile another writer
// of the process may take the lock again. Writers that pass the gate wait
// on each other in Go instead, and an urgent writer goes before every
// ordinary one waiting.
type writeGate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	held   bool
	urgent int // urgent writers waiting
}

func (g *writeGate) lock(urgent bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	if urgent {
		g.urgent++
	}
	for g.held || !urgent && g.urgent > 0 {
		g.cond.Wait()
	}
	if urgent {
		g.urgent--
	}
	g.held = true
}

func (g *writeGate) unlock() {
	g.mu.Lock()
	g.held = false
	g.mu.Unlock()
	g.cond.Broadcast()
}

func (g *writeGate) urgentWaiting() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.urgent > 0
}

// LockWrite waits for the write gate and returns its unlock, which the
// caller calls once its write transaction has ended (committed or rolled
// back). Take it before BeginTx. An urgent writer (the rules' commit, which
// meter intake waits on) goes before the ordinary ones (the SMS
// dispatcher's). On PostgreSQL, which has many writers, it does nothing.
func (db *DB) LockWrite(urgent bool) (unlock func()) {
	if db.Postgres() || db.writers == nil {
		return func() {}
	}
	db.writers.lock(urgent)
	return sync.OnceFunc(db.writers.unlock)
}

// UrgentWriteWaiting reports whether an urgent writer waits at the gate:
// an ordinary writer holding it should commit what it has done and let go.
func (db *DB) UrgentWriteWaiting() bool {
	return db.writers != nil && db.writers.urgentWaiting()
}
