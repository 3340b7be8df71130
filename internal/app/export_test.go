package app

import "time"

// SetRulesLeaseTTL sets how long the cluster-rules lease lasts (15 s) for
// the instances a test starts after it, until the returned func restores it.
func SetRulesLeaseTTL(d time.Duration) (restore func()) {
	was := rulesLeaseTTL
	rulesLeaseTTL = d
	return func() { rulesLeaseTTL = was }
}

// SetTakeoverDelay makes the state load of every takeover from now on take
// d longer, as a large fleet's would.
func SetTakeoverDelay(d time.Duration) { takeoverDelay.Store(int64(d)) }
