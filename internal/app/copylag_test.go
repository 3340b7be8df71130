package app

import (
	"strings"
	"testing"
	"time"
)

// TestCopyStaleIsNotReady: an instance whose copy of the rules' state
// stopped refreshing (it last held every commit more than copyStaleAfter
// ago) is not ready, and says how far behind it is; one that refreshed, or
// runs the rules, is.
func TestCopyStaleIsNotReady(t *testing.T) {
	a := &App{cluster: &clusterState{}}
	if err := a.clusterReady(); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Errorf("clusterReady() before the first refresh = %v, want not loaded", err)
	}
	a.cluster.loaded.Store(true)
	a.cluster.current.Store(time.Now().Add(-copyStaleAfter - 10*time.Second).UnixNano())
	if err := a.clusterReady(); err == nil || !strings.Contains(err.Error(), "behind") {
		t.Errorf("clusterReady() of a copy %s behind = %v, want an error saying how far behind", copyStaleAfter+10*time.Second, err)
	}
	a.cluster.leader.Store(true)
	if err := a.clusterReady(); err != nil {
		t.Errorf("clusterReady() of the instance running the rules = %v, want nil", err)
	}
	a.cluster.leader.Store(false)
	a.cluster.current.Store(time.Now().UnixNano())
	if err := a.clusterReady(); err != nil {
		t.Errorf("clusterReady() of a copy refreshed just now = %v, want nil", err)
	}
}
