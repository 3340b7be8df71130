package httpapi

import (
	"net/http"
	"time"

	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// stormMinutes is how far back the SMS traffic goes.
const stormMinutes = 30

// FeederTiles is one feeder's transformer areas.
type FeederTiles struct {
	Feeder    string            `json:"feeder"`
	Customers int               `json:"customers"`
	Out       int               `json:"out"`
	Areas     []rules.AreaState `json:"areas"`
}

// GridTiles is one grid's feeders.
type GridTiles struct {
	Grid      string        `json:"grid"`
	Manager   string        `json:"manager"`
	Customers int           `json:"customers"`
	Out       int           `json:"out"`
	Feeders   []FeederTiles `json:"feeders"`
}

// Storm answers GET /api/v1/storm: the storm at a glance.
type Storm struct {
	At       time.Time       `json:"at"`
	Storm    bool            `json:"storm"` // storm mode: manager digests go out once per grid
	Out      int             `json:"out"`   // customers out in the asker's grids
	AreasOut int             `json:"areas_out"`
	Grids    []GridTiles     `json:"grids"`
	SMS      []notify.Minute `json:"sms"` // per minute, the last 30, of the asker's grids
}

func (s *Server) storm(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	st := Storm{At: time.Now().UTC(), Storm: s.deps.Overview.StormMode(), Grids: []GridTiles{}}
	var g *GridTiles
	for _, a := range s.deps.Overview.AreaStates() { // by grid, then area
		if !p.canSeeGrid(a.Grid) {
			continue
		}
		if g == nil || g.Grid != a.Grid {
			info, _ := s.deps.Directory.Grid(a.Grid)
			st.Grids = append(st.Grids, GridTiles{Grid: a.Grid, Manager: info.Manager, Feeders: []FeederTiles{}})
			g = &st.Grids[len(st.Grids)-1]
		}
		a.Name = s.areaName(a.Area)
		f := feederOf(g, a.Feeder)
		f.Areas = append(f.Areas, a)
		f.Customers += a.Customers
		f.Out += a.Out
		g.Customers += a.Customers
		g.Out += a.Out
		st.Out += a.Out
		if a.State != "ok" {
			st.AreasOut++
		}
	}
	var grids []string // all
	if p.role == RoleManager {
		grids = p.grids
	}
	sms, err := s.deps.History.Minutes(r.Context(), st.At.Add(-stormMinutes*time.Minute), grids)
	if err != nil {
		s.log.Error().Err(err).Msg("cannot read sms minutes")
		writeError(w, http.StatusInternalServerError, "cannot read sms traffic")
		return
	}
	st.SMS = sms
	writeJSON(w, 200, st)
}

// feederOf is g's tiles of feeder, added when new.
func feederOf(g *GridTiles, feeder string) *FeederTiles {
	for i := range g.Feeders {
		if g.Feeders[i].Feeder == feeder {
			return &g.Feeders[i]
		}
	}
	g.Feeders = append(g.Feeders, FeederTiles{Feeder: feeder, Areas: []rules.AreaState{}})
	return &g.Feeders[len(g.Feeders)-1]
}
