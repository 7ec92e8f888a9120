package attacksurface

import (
	"sync/atomic"
	"time"
)

// Stats counts requests and their total duration since it was created,
// without locks: Track is two atomic adds, so it costs nothing measurable
// next to a request. The zero value is ready to use.
//
// The two counters are not updated as one: a Snapshot taken while another
// request finishes may see its count but not yet its duration. surfacescan
// accepts the same discrepancy; it is gone once the request is tracked.
type Stats struct {
	count atomic.Int64
	nanos atomic.Int64
}

// StatsSnapshot is the body of GET /api/v1/stats.
type StatsSnapshot struct {
	// VMCount is the number of VMs in the environment.
	VMCount int `json:"vm_count"`
	// RequestCount is the number of requests tracked so far.
	RequestCount int64 `json:"request_count"`
	// AverageRequestTime is the mean request duration in seconds, 0 when
	// no request has been tracked.
	AverageRequestTime float64 `json:"average_request_time"`
}

// Track records one request that took d. A negative d counts as zero.
func (s *Stats) Track(d time.Duration) {
	s.count.Add(1)
	s.nanos.Add(int64(max(d, 0)))
}

// Snapshot returns the counters with vmCount, which Stats does not know.
func (s *Stats) Snapshot(vmCount int) StatsSnapshot {
	n := s.count.Load()
	total := s.nanos.Load()
	snap := StatsSnapshot{VMCount: vmCount, RequestCount: n}
	if n > 0 {
		snap.AverageRequestTime = time.Duration(total).Seconds() / float64(n)
	}
	return snap
}
