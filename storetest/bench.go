package storetest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scanfleet/scanfleet"
)

// BenchConfig configures BenchIngest.
type BenchConfig struct {
	// Raw is the database the raw INSERTs run on: the store's own, so that
	// both paths pay for the same engine, disk and connection. Required.
	Raw *sql.DB
	// Rebind rewrites the '?' placeholders for Raw's driver. Default: none.
	Rebind func(string) string
	// Records is how many records one iteration ingests. Default: 10000.
	Records int
	// BatchSize is how many rows one raw INSERT carries; pass the store's
	// own batch size. Default: 500.
	BatchSize int
}

// BenchIngest measures Store.UpsertRecords on Records fresh service records
// (a new workspace each iteration, so every key is new) against the floor
// measured in the same iterations: the same rows written by plain multi-row
// INSERTs, BatchSize rows each, in one transaction, into a table with the
// same columns and unique index but no foreign key, secondary index, read
// or merge. It reports store-records/s, raw-records/s and x-raw, the
// store's time over the raw time, and logs them; ns/op covers both.
func BenchIngest(b *testing.B, s scanfleet.Store, cfg BenchConfig) {
	if cfg.Raw == nil {
		b.Fatal("storetest: BenchConfig.Raw is nil")
	}
	if cfg.Rebind == nil {
		cfg.Rebind = func(q string) string { return q }
	}
	if cfg.Records <= 0 {
		cfg.Records = 10000
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	ctx := context.Background()
	recs := benchServices(b, cfg.Records)
	now := time.Now()
	task := scanfleet.NewTaskID()

	_, err := cfg.Raw.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS bench_raw_records (
		id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
		first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL, first_task TEXT NOT NULL, last_task TEXT NOT NULL,
		UNIQUE (workspace_id, kind, key))`)
	if err != nil {
		b.Fatalf("create raw table: %v", err)
	}

	// Raw and store runs alternate within each iteration, so that load
	// from elsewhere on the machine falls on both alike.
	var rawTime, storeTime time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		ws := &scanfleet.Workspace{Name: fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)}
		if err := s.CreateWorkspace(ctx, ws); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		runs := []func() error{
			func() error {
				start := time.Now()
				err := rawInsert(ctx, cfg, scanfleet.NewID(), task, recs, now)
				rawTime += time.Since(start)
				return err
			},
			func() error {
				start := time.Now()
				res, err := s.UpsertRecords(ctx, ws.Name, task, recs, now)
				storeTime += time.Since(start)
				if err == nil && res.New != cfg.Records {
					err = fmt.Errorf("ingest: %d new records, want %d", res.New, cfg.Records)
				}
				return err
			},
		}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, run := range runs {
			if err := run(); err != nil {
				b.Fatal(err)
			}
		}
	}
	total := float64(cfg.Records * b.N)
	storeRate, rawRate := total/storeTime.Seconds(), total/rawTime.Seconds()
	b.ReportMetric(storeRate, "store-records/s")
	b.ReportMetric(rawRate, "raw-records/s")
	b.ReportMetric(storeTime.Seconds()/rawTime.Seconds(), "x-raw")
	b.Logf("%d records × %d: store %.0f records/s, raw INSERT %.0f records/s: the store takes %.2fx the raw time",
		cfg.Records, b.N, storeRate, rawRate, storeTime.Seconds()/rawTime.Seconds())
}

// rawInsert writes recs as the store would for a new workspace, with none
// of its reads, merging or foreign keys.
func rawInsert(ctx context.Context, cfg BenchConfig, wsID, task string, recs []scanfleet.Record, now time.Time) error {
	tx, err := cfg.Raw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	const cols = 9
	ts := now.UnixMicro()
	args := make([]any, 0, cols*cfg.BatchSize)
	for start := 0; start < len(recs); start += cfg.BatchSize {
		batch := recs[start:min(start+cfg.BatchSize, len(recs))]
		args = args[:0]
		for _, r := range batch {
			data, err := json.Marshal(r.Data)
			if err != nil {
				return err
			}
			args = append(args, scanfleet.NewID(), wsID, string(r.Kind), r.Key, string(data), ts, ts, task, task)
		}
		row := "(" + strings.Repeat("?, ", cols-1) + "?)"
		query := "INSERT INTO bench_raw_records (id, workspace_id, kind, key, data, first_seen, last_seen, first_task, last_task) VALUES " +
			strings.Repeat(row+", ", len(batch)-1) + row
		if _, err := tx.ExecContext(ctx, cfg.Rebind(query), args...); err != nil {
			return fmt.Errorf("raw insert: %w", err)
		}
	}
	return tx.Commit()
}

// benchServices returns n distinct service records as a port scan with
// banner grabbing reports them: ten ports on each of n/10 hosts.
func benchServices(tb testing.TB, n int) []scanfleet.Record {
	type svc struct {
		port          int
		name, product string
		banner        string
	}
	svcs := []svc{
		{22, "ssh", "OpenSSH", "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5"},
		{25, "smtp", "Postfix", "220 mail.example.com ESMTP Postfix (Ubuntu)"},
		{53, "domain", "BIND", ""},
		{80, "http", "nginx", "HTTP/1.1 301 Moved Permanently\r\nServer: nginx/1.24.0"},
		{443, "https", "nginx", "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0"},
		{3306, "mysql", "MySQL", "8.0.36-0ubuntu0.22.04.1"},
		{5432, "postgresql", "PostgreSQL", ""},
		{6379, "redis", "Redis", "-NOAUTH Authentication required."},
		{8080, "http-proxy", "Jetty", "HTTP/1.1 404 Not Found\r\nServer: Jetty(9.4.z-SNAPSHOT)"},
		{8443, "https-alt", "Apache Tomcat", "HTTP/1.1 200 OK"},
	}
	out := make([]scanfleet.Record, 0, n)
	for i := range n {
		host, v := i/len(svcs), svcs[i%len(svcs)]
		r, err := scanfleet.NewRecord(map[string]any{
			"kind":    "service",
			"ip":      fmt.Sprintf("10.%d.%d.%d", host>>16&255, host>>8&255, host&255),
			"port":    v.port,
			"proto":   "tcp",
			"state":   "open",
			"name":    v.name,
			"product": v.product,
			"banner":  v.banner,
			"tls":     v.port == 443 || v.port == 8443,
			"rtt_ms":  json.Number(fmt.Sprintf("%d.%d", 1+i%40, i%10)),
		})
		if err != nil {
			tb.Fatalf("bench record %d: %v", i, err)
		}
		out = append(out, r)
	}
	return out
}
