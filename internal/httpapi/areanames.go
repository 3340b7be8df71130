package httpapi

// areaNamer is a Directory that knows transformer areas' names (the
// contacts file's area_name column), as *contacts.Registry does.
type areaNamer interface {
	AreaName(area string) string
}

// areaName is area's name, "" when none is known.
func (s *Server) areaName(area string) string {
	if n, ok := s.deps.Directory.(areaNamer); ok {
		return n.AreaName(area)
	}
	return ""
}

// areaNames maps each of areas that has a name to it; nil when none has.
func (s *Server) areaNames(areas []string) map[string]string {
	var out map[string]string
	for _, a := range areas {
		if n := s.areaName(a); n != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[a] = n
		}
	}
	return out
}
