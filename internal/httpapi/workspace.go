package httpapi

import "net/http"

// workspaceRoutes adds the operators' workspace: the page, logins and the
// audit log.
func (s *Server) workspaceRoutes(mux *routeMux) {
	a := s.auth
	everyone := []string{RoleAdmin, RoleDispatcher, RoleManager, RoleHotline, RoleIngest}
	mux.HandleFunc("GET /{$}", servePage)
	mux.HandleFunc("POST /api/v1/login", s.login)
	mux.HandleFunc("POST /api/v1/logout", s.logout)
	mux.Handle("GET /api/v1/me", a.require(http.HandlerFunc(s.whoAmI), everyone...))
	mux.Handle("GET /api/v1/audit", a.require(http.HandlerFunc(s.auditLog), RoleAdmin))
}
