package http

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scanfleet/scanfleet"
)

// metrics holds the server's Prometheus metrics, in a registry of its own
// so that several servers in one process (tests) do not collide.
type metrics struct {
	registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	tasksCreated    prometheus.Counter
	ingestRecords   *prometheus.CounterVec
	ingestRequests  *prometheus.CounterVec
	ingestDurations prometheus.Histogram
}

func newMetrics(store scanfleet.Store) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scanfleet_http_requests_total", Help: "HTTP requests by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "scanfleet_http_request_duration_seconds", Help: "HTTP request latency by method and route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"method", "route"}),
		tasksCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scanfleet_tasks_created_total", Help: "Tasks created by scan runs.",
		}),
		ingestRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scanfleet_ingest_records_total", Help: "Records ingested, by outcome: new, changed or unchanged.",
		}, []string{"outcome"}),
		ingestRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scanfleet_ingest_requests_total", Help: "Ingest requests by result code (ok or an error code).",
		}, []string{"code"}),
		ingestDurations: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scanfleet_ingest_duration_seconds", Help: "Time to validate and store one ingest request.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
	}
	tasks := prometheus.NewDesc("scanfleet_tasks", "Tasks in the store by status.", []string{"status"}, nil)
	m.registry.MustRegister(
		m.requests, m.duration, m.tasksCreated, m.ingestRecords, m.ingestRequests, m.ingestDurations,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&taskCollector{store: store, desc: tasks},
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

func (m *metrics) observeIngest(res scanfleet.IngestResult, d time.Duration) {
	m.ingestRequests.WithLabelValues("ok").Inc()
	m.ingestRecords.WithLabelValues("new").Add(float64(res.New))
	m.ingestRecords.WithLabelValues("changed").Add(float64(res.Changed))
	m.ingestRecords.WithLabelValues("unchanged").Add(float64(res.Unchanged))
	m.ingestDurations.Observe(d.Seconds())
}

// middleware counts requests by route pattern, never by raw path, so that
// ids in paths cannot blow up the number of series.
func (m *metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		m.requests.WithLabelValues(r.Method, route, strconv.Itoa(sw.status)).Inc()
		m.duration.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// taskCollector reads task counts from the store at scrape time, so the
// gauge is right whichever replica changed the tasks.
type taskCollector struct {
	store scanfleet.Store
	desc  *prometheus.Desc
}

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.store.CountTasksByStatus(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, st := range scanfleet.TaskStatuses {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}
