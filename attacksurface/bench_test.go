package attacksurface

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// benchJSON returns the JSON of a generated environment of n VMs with the
// benchmark shape of 1,000 tags and 10,000 rules (surfacescan's generator
// distribution, seed 1). Only the bytes are cached across benchmarks: a
// retained *Env would add 100k strings for the GC to scan during queries,
// which a server that dropped its Env after Build does not have.
func benchJSON(b *testing.B, n int) []byte {
	b.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if data, ok := benchData[n]; ok {
		return data
	}
	var buf bytes.Buffer
	if err := Generate(GenConfig{VMs: n, Tags: 1000, Rules: 10_000, Seed: 1}).WriteJSON(&buf); err != nil {
		b.Fatal(err)
	}
	benchData[n] = buf.Bytes()
	return buf.Bytes()
}

var (
	benchMu   sync.Mutex
	benchData = map[int][]byte{}
)

// benchGraph parses and builds the benchmark environment of n VMs.
func benchGraph(b *testing.B, n int) *Graph {
	b.Helper()
	env, err := Parse(bytes.NewReader(benchJSON(b, n)))
	if err != nil {
		b.Fatal(err)
	}
	g, err := Build(env)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkLoad parses and builds environments of 10k and 100k VMs (1k
// tags, 10k rules). It reports the time of each step and the heap the
// Graph retains once the parsed Env is garbage.
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("vms=%d", n), func(b *testing.B) {
			data := benchJSON(b, n)
			b.SetBytes(int64(len(data)))
			base := heapInUse()
			var g *Graph
			var parse, build time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				env, err := Parse(bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				g, err = Build(env)
				if err != nil {
					b.Fatal(err)
				}
				parse += t1.Sub(t0)
				build += time.Since(t1)
			}
			b.StopTimer()
			retained := heapInUse() - min(base, heapInUse())
			runtime.KeepAlive(g)
			per := float64(b.N) * float64(time.Millisecond)
			b.ReportMetric(float64(parse+build)/per, "load-ms")
			b.ReportMetric(float64(parse)/per, "parse-ms")
			b.ReportMetric(float64(build)/per, "build-ms")
			b.ReportMetric(float64(retained)/(1<<20), "graph-heap-MiB")
		})
	}
}

// querySample is the number of queries per benchmark iteration, so that
// percentiles mean something even with -benchtime 1x.
const querySample = 5000

// BenchmarkQuery times single Attackers calls on random VMs and reports
// their p50 and p99, and the mean answer size.
func BenchmarkQuery(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		g := benchGraph(b, n)
		rng := rand.New(rand.NewPCG(2, 3))
		ids := make([]string, querySample)
		for i := range ids {
			ids[i] = g.ids[rng.IntN(len(g.ids))]
		}
		// "append" reuses one []string (AppendAttackers); "json" is what the
		// HTTP handler does (AppendAttackersJSON into a reused buffer). Both
		// are transitive.
		for _, mode := range []Mode{ModeTransitive, ModeDirect, ModeTag, "append", "json"} {
			b.Run(fmt.Sprintf("vms=%d/mode=%s", n, mode), func(b *testing.B) {
				lat := make([]time.Duration, 0, querySample)
				var answered, size int
				var buf []byte
				var reuse []string
				var err error
				for b.Loop() {
					for _, id := range ids {
						t0 := time.Now()
						switch mode {
						case "json":
							buf, err = g.AppendAttackersJSON(buf[:0], id, ModeTransitive)
							size += len(buf)
						case "append":
							reuse, err = g.AppendAttackers(reuse[:0], id, ModeTransitive)
							size += len(reuse)
						default:
							var got []string
							got, err = g.Attackers(id, mode)
							size += len(got)
						}
						lat = append(lat, time.Since(t0))
						if err != nil {
							b.Fatal(err)
						}
						answered++
					}
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
				b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
				unit := "ids/query"
				if mode == "json" {
					unit = "bytes/query"
				}
				b.ReportMetric(float64(size)/float64(answered), unit)
				b.ReportMetric(0, "ns/op") // per batch; the percentiles are per query
			})
		}
	}
}

// randomPaths returns count /api/v1/attack paths for random VMs of g, the
// same for the same count.
func randomPaths(g *Graph, count int, mode Mode) []string {
	rng := rand.New(rand.NewPCG(5, 8))
	paths := make([]string, count)
	for i := range paths {
		paths[i] = "/api/v1/attack?vm_id=" + url.QueryEscape(g.ids[rng.IntN(len(g.ids))])
		if mode != "" {
			paths[i] += "&mode=" + string(mode)
		}
	}
	return paths
}

// BenchmarkHTTP runs a bounded load on the Go handler over loopback:
// 20,000 /api/v1/attack requests for random VMs of a 10k-VM environment
// from 8 keep-alive clients, capped at 30 s.
func BenchmarkHTTP(b *testing.B) {
	const requests, clients = 20_000, 8
	g := benchGraph(b, 10_000)
	srv := httptest.NewServer(NewHandler(g))
	defer srv.Close()
	paths := randomPaths(g, 4096, "")
	var res loadResult
	for b.Loop() {
		res = runLoad(b.Context(), srv.URL, paths, requests, clients, 30*time.Second)
	}
	if res.failed > 0 {
		b.Fatalf("%d requests failed", res.failed)
	}
	reportLoad(b, "", res)
}

func reportLoad(b *testing.B, prefix string, res loadResult) {
	b.ReportMetric(res.rps(), prefix+"req/s")
	b.ReportMetric(float64(res.percentile(0.50).Microseconds())/1000, prefix+"p50-ms")
	b.ReportMetric(float64(res.percentile(0.99).Microseconds())/1000, prefix+"p99-ms")
	if prefix == "" {
		b.ReportMetric(float64(res.bytes)/float64(max(res.done, 1))/1024, "KiB/resp")
		b.ReportMetric(float64(res.done), "requests")
	}
}
