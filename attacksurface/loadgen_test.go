package attacksurface

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one bounded load run measured.
type loadResult struct {
	done    int           // requests answered 200
	failed  int           // transport errors and other statuses
	bytes   int64         // response body bytes
	elapsed time.Duration // wall time of the run
	lat     []time.Duration
}

func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.done) / r.elapsed.Seconds()
}

// percentile returns the q-th quantile (0..1) of the latencies.
func (r loadResult) percentile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

// runLoad sends total GET requests for base+paths[i%len(paths)] from
// clients concurrent keep-alive connections, and stops early when timeout
// passes. It closes its connections before returning.
func runLoad(ctx context.Context, base string, paths []string, total, clients int, timeout time.Duration) loadResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{
		MaxIdleConns:        clients,
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	var next atomic.Int64
	var mu sync.Mutex
	res := loadResult{lat: make([]time.Duration, 0, total)}
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var lat []time.Duration
			var done, failed int
			var n int64
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= total {
					break
				}
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+paths[i%len(paths)], nil)
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						failed++
					}
					continue
				}
				m, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n += m
				if err != nil || resp.StatusCode != http.StatusOK {
					if ctx.Err() == nil {
						failed++
					}
					continue
				}
				lat = append(lat, time.Since(t0))
				done++
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.done += done
			res.failed += failed
			res.bytes += n
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}
