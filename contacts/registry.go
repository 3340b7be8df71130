package contacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/store"
)

// ErrNoRows is returned by Import for a file without a single good row: it
// would retire every customer, so nothing is changed.
var ErrNoRows = errors.New("no valid rows")

// ErrMissingColumns is returned by Import and Check for a file whose header
// lacks a required column (docs/interfaces.md §3: account, meter, area, grid).
var ErrMissingColumns = errors.New("required columns missing")

// Registry is the customer registry: the store's tables and an in-memory
// index rebuilt from them. Lookups are safe for concurrent use and take no
// lock; Import and Refresh swap in a new index when it is complete.
type Registry struct {
	db  *store.DB
	log zerolog.Logger
	ix  atomic.Pointer[index]
	gen atomic.Uint64 // bumped on every swap

	importMu sync.Mutex // one import or refresh at a time
	importID int64      // latest contacts_imports id the index holds; guarded by importMu
	stateMu  sync.Mutex // orders SetVerdict/SetOptOut against the index swap
	feed     stateFeed  // other instances' phone states; guarded by stateMu
}

// Summary is the outcome of one import.
type Summary struct {
	Encoding  string        `json:"encoding"`
	Rows      int           `json:"rows"`      // data rows read
	Imported  int           `json:"imported"`  // rows stored
	Rejected  int           `json:"rejected"`  // rows refused, each in the reject file
	Added     int           `json:"added"`     // meters new to the registry
	Updated   int           `json:"updated"`   // meters already known whose row changed (retired ones come back)
	Unchanged int           `json:"unchanged"` // meters already known with the same row as before
	Retired   int           `json:"retired"`   // meters missing from this file
	Accounts  int           `json:"accounts"`  // active accounts after the import
	Took      time.Duration `json:"-"`
	Seconds   float64       `json:"took_seconds"` // Took, for JSON readers
	Report    Report        `json:"report"`       // quality of the imported file
}

// Open migrates the registry's tables and rebuilds the index from the store.
func Open(ctx context.Context, db *store.DB, log zerolog.Logger) (*Registry, error) {
	if err := db.Migrate(ctx, "contacts", migrationsFor(db.Driver())); err != nil {
		return nil, err
	}
	r := &Registry{db: db, log: logging.Component(log, "contacts")}
	start := time.Now()
	ix, id, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.swap(ctx, ix, id); err != nil {
		return nil, err
	}
	r.log.Info().Int("meters", ix.activeMeters).Int("accounts", ix.active).
		Dur("took", time.Since(start)).Msg("contacts loaded")
	return r, nil
}

// load builds an index from every stored customer and returns it with the
// id of the latest import it holds. The id is read first: should another
// process commit an import during the scan, the index may hold more than
// the id says, and the next Refresh merely rebuilds it once more.
func (r *Registry) load(ctx context.Context) (*index, int64, error) {
	id, err := latestImport(ctx, r.db)
	if err != nil {
		return nil, 0, err
	}
	var n int
	if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM contacts_customers`).Scan(&n); err != nil {
		return nil, 0, fmt.Errorf("cannot count contacts: %w", err)
	}
	b := newBuilder(n)
	scan := func(put func(*row) error) error { return scanCustomers(ctx, r.db, "", put) }
	if err := pipeRows(scan, b.addRow); err != nil {
		return nil, 0, err
	}
	return b.freeze(), id, nil
}

// Refresh rebuilds the index when the store holds a newer import than the
// index was built from: one made by another process (gridbell contacts
// import) sharing the store. It reports whether a new index was swapped in.
// The check is one query on contacts_imports' key, cheap enough to run
// every few seconds; lookups never wait for the rebuild.
func (r *Registry) Refresh(ctx context.Context) (changed bool, err error) {
	r.importMu.Lock()
	defer r.importMu.Unlock()
	id, err := latestImport(ctx, r.db)
	if err != nil || id == r.importID {
		return false, err
	}
	ix, id, err := r.load(ctx)
	if err != nil {
		return false, err
	}
	if err := r.swap(ctx, ix, id); err != nil {
		return false, err
	}
	return true, nil
}

// Generation counts the index swaps: it grows with every import or refresh
// that changed the registry, so readers caching what they looked up know
// when to look again.
func (r *Registry) Generation() uint64 { return r.gen.Load() }

// Accounts returns the number of active accounts.
func (r *Registry) Accounts() int { return r.ix.Load().active }

// ImportFile imports the contacts file at path, writing bad rows to
// rejectPath (none when empty).
func (r *Registry) ImportFile(ctx context.Context, path, rejectPath string) (Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Summary{}, fmt.Errorf("cannot open contacts file: %w", err)
	}
	defer f.Close()
	var rejects io.Writer
	if rejectPath != "" {
		// Rejected rows carry names and phone numbers: owner only.
		rf, err := os.OpenFile(rejectPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return Summary{}, fmt.Errorf("cannot create reject file: %w", err)
		}
		defer rf.Close()
		if err := rf.Chmod(0o600); err != nil { // a file from an older release was 0644
			return Summary{}, fmt.Errorf("cannot create reject file: %w", err)
		}
		rejects = rf
	}
	return r.Import(ctx, f, rejects)
}

// Import reads a contacts file into the registry in one transaction: rows
// are added or updated, customers missing from the file are retired, and
// bad rows go to rejects (CSV line,column,reason,raw) without stopping the
// import. Accounts without a number that can take SMS are listed there too,
// after the refused rows. On error the registry is left as it was; with
// ErrNoRows the summary still counts the rows read and refused, and
// rejects holds them.
func (r *Registry) Import(ctx context.Context, src io.Reader, rejects io.Writer) (Summary, error) {
	r.importMu.Lock()
	defer r.importMu.Unlock()
	start := time.Now()
	fr, err := newFileReader(src)
	if err != nil {
		return Summary{}, err
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return Summary{}, fmt.Errorf("cannot begin contacts import: %w", err)
	}
	defer tx.Rollback()
	im, err := newImport(ctx, r.db, tx, r.ix.Load())
	if err != nil {
		return Summary{}, err
	}
	rw := newRejectWriter(rejects)
	sum, ix, err := im.run(fr, rw)
	if errors.Is(err, ErrNoRows) {
		rw.flush() // the refused rows say why; err says enough if they cannot be written
		return sum, err
	}
	if err != nil {
		return Summary{}, err
	}
	if err := rw.flush(); err != nil {
		return Summary{}, err
	}
	if err := tx.Commit(); err != nil {
		return Summary{}, fmt.Errorf("cannot commit contacts import: %w", err)
	}
	if err := r.swap(ctx, ix, im.id); err != nil {
		return Summary{}, err
	}
	sum.Took = time.Since(start)
	sum.Seconds = sum.Took.Seconds()
	importRows("imported").Add(float64(sum.Imported))
	importRows("rejected").Add(float64(sum.Rejected))
	r.log.Info().Str("encoding", sum.Encoding).Int("rows", sum.Rows).Int("rejected", sum.Rejected).Int("added", sum.Added).
		Int("updated", sum.Updated).Int("unchanged", sum.Unchanged).Int("retired", sum.Retired).
		Int("accounts", sum.Accounts).Dur("took", sum.Took).Msg("contacts imported")
	return sum, nil
}

// swap makes ix, built from imports up to importID, current with the phone
// states stored up to now, bumps the generation and publishes the gauges.
// The caller holds importMu, or is Open.
func (r *Registry) swap(ctx context.Context, ix *index, importID int64) error {
	r.stateMu.Lock()
	read := time.Now()
	err := applyStates(ctx, r.db, ix)
	if err == nil {
		r.ix.Store(ix)
		r.gen.Add(1)
		r.feed.reset(read)
	}
	r.stateMu.Unlock()
	if err != nil {
		return err
	}
	r.importID = importID
	publish(ix) // outside stateMu: it may count the report
	return nil
}

// SetVerdict records what the SMS provider said of a number (Twilio 21211
// invalid, 21614 not a mobile). It is stored, and counted in Quality.
func (r *Registry) SetVerdict(ctx context.Context, e164 string, v Verdict, reason string) error {
	if verdictCode(v) == 0 {
		return fmt.Errorf("cannot set verdict %q: unknown verdict", v)
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	changed, err := storeVerdict(ctx, r.db, e164, v, reason)
	if err != nil {
		return err
	}
	r.feed.seen[e164] = changed
	verdictsCounter(v).Inc()
	if !r.ix.Load().setVerdict(e164, v, reason) {
		r.log.Debug().Str("phone", logging.Phone(e164)).Msg("verdict for a number not in the registry")
	}
	return nil
}

// SetOptOut records a STOP (true) or START (false) reply from a number.
func (r *Registry) SetOptOut(ctx context.Context, e164 string, optOut bool) error {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	changed, err := storeOptOut(ctx, r.db, e164, optOut)
	if err != nil {
		return err
	}
	r.feed.seen[e164] = changed
	r.ix.Load().setOptOut(e164, optOut)
	return nil
}

// Len returns the number of active customers (meters).
func (r *Registry) Len() int { return r.ix.Load().activeMeters }

// Meter returns an active meter.
func (r *Registry) Meter(id string) (MeterInfo, bool) {
	ix := r.ix.Load()
	m, ok := ix.activeMeter(id)
	if !ok {
		return MeterInfo{}, false
	}
	return ix.meterInfo(m), true
}

// MeterArea returns the transformer area of an active meter.
func (r *Registry) MeterArea(id string) (area string, ok bool) {
	ix := r.ix.Load()
	m, ok := ix.activeMeter(id)
	if !ok {
		return "", false
	}
	return dim(ix.areas, ix.meter[m].area), true
}

// AreaName returns the name the contacts file gives a transformer area
// (its area_name column), "" when it gives none.
func (r *Registry) AreaName(area string) string {
	ix := r.ix.Load()
	a, ok := ix.areas.find(area)
	if !ok || int(a) >= len(ix.areaNames) {
		return ""
	}
	return ix.areaNames[a]
}

// AreaMeters returns the active meters of a transformer area. The slice is
// shared: do not modify it.
func (r *Registry) AreaMeters(area string) []string {
	ix := r.ix.Load()
	return group(ix.areas, ix.areaOff, ix.areaMeters, area)
}

// ConcentratorMeters returns the active meters behind a concentrator. The
// slice is shared: do not modify it.
func (r *Registry) ConcentratorMeters(c string) []string {
	ix := r.ix.Load()
	return group(ix.concs, ix.concOff, ix.concMeters, c)
}

// FeederAreas returns the transformer areas fed by a feeder, sorted. The
// slice is shared: do not modify it.
func (r *Registry) FeederAreas(feeder string) []string {
	ix := r.ix.Load()
	f, ok := ix.feeders.find(feeder)
	if !ok {
		return nil
	}
	as := ix.feederAreas[f]
	return as[:len(as):len(as)]
}

// Account returns an account, retired ones too (Retired is set: they get no
// SMS). Meters lists the active meters of an active account.
func (r *Registry) Account(acct string) (Account, bool) {
	ix := r.ix.Load()
	a, ok := ix.accounts.find(acct)
	if !ok {
		return Account{}, false
	}
	return ix.account(a), true
}

// Grid returns a service grid with its manager and active areas.
func (r *Registry) Grid(grid string) (GridInfo, bool) {
	ix := r.ix.Load()
	g, ok := ix.grids.find(grid)
	if !ok || len(ix.gridInfo[g].Areas) == 0 {
		return GridInfo{}, false
	}
	gi := ix.gridInfo[g]
	gi.Areas = slices.Clone(gi.Areas)
	return gi, true
}

// Grids returns the grids with active customers, sorted.
func (r *Registry) Grids() []string { return slices.Clone(r.ix.Load().gridNames) }

// AccountsByPhone returns the active accounts that list a number.
func (r *Registry) AccountsByPhone(e164 string) []string {
	ix := r.ix.Load()
	p, ok := ix.phones.find(e164)
	if !ok || ix.phoneOff[p] == ix.phoneOff[p+1] {
		return nil
	}
	out := make([]string, 0, ix.phoneOff[p+1]-ix.phoneOff[p])
	for _, a := range ix.phoneAccts[ix.phoneOff[p]:ix.phoneOff[p+1]] {
		out = append(out, ix.accounts.get(a))
	}
	return out
}
