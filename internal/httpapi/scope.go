package httpapi

import (
	"slices"

	"github.com/gridbell/gridbell/notify"
)

// A manager sees only the customers, meters and counts of its own grids,
// in every answer (docs/interfaces.md §6): the rules' views take the grids, notify's
// figures are cut to the grids' accounts here, and customer lists are
// filtered row by row.

// scope is the grids p may see: nil for every grid (admins, dispatchers),
// else the manager's own, never nil.
func (p principal) scope() []string {
	if p.role != RoleManager {
		return nil
	}
	return append([]string{}, p.grids...)
}

// within cuts notify's figures to p's customers.
func (s *Server) within(st notify.RefStats, p principal) notify.RefStats {
	grids := p.scope()
	if grids == nil {
		return st
	}
	return st.Within(func(acct string) bool {
		if s.deps.Quality == nil {
			return false
		}
		a, ok := s.deps.Quality.Account(acct)
		return ok && slices.Contains(grids, a.Grid)
	})
}
