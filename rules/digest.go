package rules

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/internal/event"
)

// maxNames caps the critical customers named in one digest (an SMS is short).
const maxNames = 20

// digest gathers what one grid's manager is to be told, stored as JSON so
// a held storm digest survives a restart. Guarded by Engine.mu.
type digest struct {
	Count     int      `json:"count"`
	Critical  []string `json:"critical,omitempty"` // names
	NCritical int      `json:"n_critical"`
	// LifeSupport are the names among Critical of life-support customers,
	// told apart from important and high-risk ones.
	LifeSupport  []string  `json:"life_support,omitempty"`
	NLifeSupport int       `json:"n_life_support,omitempty"`
	Areas        []string  `json:"areas,omitempty"`
	Outages      []string  `json:"outages,omitempty"`
	Start        time.Time `json:"start,omitzero"` // the earliest outage's start
	LastSent     time.Time `json:"last_sent"`

	dirty bool
}

func (e *Engine) digestFor(grid string) *digest {
	d := e.digests[grid]
	if d == nil {
		d = &digest{}
		e.digests[grid] = d
	}
	if !d.dirty {
		d.dirty = true
		e.dirtyDigests = append(e.dirtyDigests, grid)
	}
	return d
}

// digestAdd notes the customer of meter m, affected by r, for the grid
// manager's digest. Lock: e.mu held.
func (e *Engine) digestAdd(m *meterState, r *outage, area string) {
	d := e.digestFor(e.gridOf(m))
	d.Count++
	if !slices.Contains(d.Outages, r.ID) {
		d.Outages = append(d.Outages, r.ID)
	}
	if r.Start != nil && (d.Start.IsZero() || r.Start.Before(d.Start)) {
		d.Start = *r.Start
	}
	if area != "" && !slices.Contains(d.Areas, area) {
		d.Areas = append(d.Areas, area)
	}
	class := contacts.Class(e.classOf(m))
	if !class.Critical() {
		return
	}
	name := m.account
	if a, ok := e.dir.Account(m.account); ok && a.Name != "" {
		name = a.Name + "(" + m.account + ")"
	}
	d.NCritical++
	if len(d.Critical) < maxNames {
		d.Critical = append(d.Critical, name)
	}
	if class == contacts.LifeSupport {
		d.NLifeSupport++
		if len(d.LifeSupport) < maxNames {
			d.LifeSupport = append(d.LifeSupport, name)
		}
	}
}

// flushDigests sends each grid's gathered digest: at once normally, and in
// storm mode at most once per StormDigest per grid, so a manager gets one
// digest per grid rather than one per area. Lock: e.mu held.
func (e *Engine) flushDigests(now time.Time) {
	grids := make([]string, 0, len(e.digests))
	for g, d := range e.digests {
		if d.Count > 0 {
			grids = append(grids, g)
		}
	}
	slices.Sort(grids)
	for _, g := range grids {
		d := e.digests[g]
		if e.stormFlag.Load() && now.Sub(d.LastSent) < e.cfg.StormDigest {
			continue
		}
		e.sendDigest(g, now)
	}
}

// sendDigest sends grid g's gathered digest and empties it. Lock: e.mu held.
func (e *Engine) sendDigest(g string, now time.Time) {
	d := e.digestFor(g)
	info, ok := e.dir.Grid(g)
	if !ok || info.ManagerPhone == "" {
		digestNoManager.Inc()
	} else {
		vars := map[string]string{"grid": g, "manager": info.Manager, "count": strconv.Itoa(d.Count),
			"critical_count": strconv.Itoa(d.NCritical), "critical": strings.Join(d.Critical, "、"),
			"areas": joinCapped(d.Areas, 10), "area_names": e.namedAreas(d.Areas, 10), "outages": joinCapped(smsIDs(d.Outages), 5), "storm": strconv.FormatBool(e.stormFlag.Load()),
			"life_support_count": strconv.Itoa(d.NLifeSupport), "life_support": strings.Join(d.LifeSupport, "、"),
			"other_critical_count": strconv.Itoa(d.NCritical - d.NLifeSupport),
			"other_critical":       strings.Join(slices.DeleteFunc(slices.Clone(d.Critical), func(n string) bool { return slices.Contains(d.LifeSupport, n) }), "、")}
		if !d.Start.IsZero() {
			vars["start"] = fmtTime(&d.Start)
		}
		e.emit(event.Intent{Key: digestKey(g, d, now), Kind: event.KindManagerDigest,
			Grid: g, To: info.ManagerPhone, Ref: d.Outages[0], Vars: vars, Priority: event.PriorityCritical, CreatedAt: now})
	}
	*d = digest{LastSent: now, dirty: true}
}

// areaNamer is a Directory that knows transformer areas' names (the
// contacts file's area_name column), as *contacts.Registry does.
type areaNamer interface {
	AreaName(area string) string
}

// areaNameLen caps an area's name in a manager's SMS.
const areaNameLen = 16

// namedAreas writes at most n of areas as a person reads them, "name(code)"
// (a code alone when it has no name), for the digest's area_names; "" when
// the directory names none of them, so that templates fall back to areas.
func (e *Engine) namedAreas(areas []string, n int) string {
	dir, ok := e.dir.(areaNamer)
	if !ok {
		return ""
	}
	out := make([]string, len(areas))
	named := false
	for i, a := range areas {
		out[i] = a
		if name := []rune(strings.TrimSpace(dir.AreaName(a))); len(name) > 0 {
			named = true
			if len(name) > areaNameLen {
				name = append(name[:areaNameLen-1], '…')
			}
			out[i] = string(name) + "(" + a + ")"
		}
	}
	if !named {
		return ""
	}
	return joinCapped(out, n)
}

// digestKey names one digest: its grid, time and contents, so two digests of
// a grid taken at the same instant (a coarse or fake clock, two outages in
// one batch) do not share a key and lose one to the outbox's idempotency.
func digestKey(g string, d *digest, now time.Time) string {
	h := fnv.New64a()
	h.Write([]byte(strings.Join(d.Outages, ",")))
	fmt.Fprintf(h, "|%d|%s", d.Count, strings.Join(d.Critical, ","))
	return fmt.Sprintf("digest/%s/%d/%x", g, now.UnixNano(), h.Sum64())
}

// smsIDs are outage ids as a manager's SMS may show them: letters, digits,
// - and _ alone, at most smsIDLen characters. An id is what an OMS wrote;
// a compromised feed must not put a link or words of its own into an SMS
// in the utility's name ("http://evil.example/pay" shows as
// "httpevilexamplepay").
func smsIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		r := []rune(strings.Map(func(r rune) rune {
			if r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) {
				return r
			}
			return -1
		}, id))
		out[i] = string(r[:min(len(r), smsIDLen)])
	}
	return out
}

// smsIDLen caps an outage id in an SMS.
const smsIDLen = 40

func joinCapped(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ",")
	}
	return strings.Join(s[:n], ",") + fmt.Sprintf(",… (+%d)", len(s)-n)
}

// stormEval switches storm mode: on when more than StormAreas areas went out
// within StormWindow, off again when at most half that many did.
// Lock: e.mu held.
func (e *Engine) stormEval(now time.Time) {
	cut := 0
	for cut < len(e.stormHits) && now.Sub(e.stormHits[cut]) > e.cfg.StormWindow {
		cut++
	}
	e.stormHits = e.stormHits[cut:]
	n := len(e.stormHits)
	storm := e.stormFlag.Load()
	switch {
	case !storm && n > e.cfg.StormAreas:
		storm = true
		e.log.Warn().Int("areas", n).Dur("window", e.cfg.StormWindow).Msg("storm mode on: manager digests go out once per grid")
	case storm && n <= e.cfg.StormAreas/2:
		storm = false
		e.log.Info().Int("areas", n).Msg("storm mode off")
	default:
		return
	}
	e.stormFlag.Store(storm)
	if storm {
		stormGauge.Set(1)
	} else {
		stormGauge.Set(0)
	}
}
