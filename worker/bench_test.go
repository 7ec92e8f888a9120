package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/natsbus"
	"github.com/scanfleet/scanfleet/worker"
)

// BenchmarkDispatch pushes b.N no-op tasks end to end on the embedded setup
// (SQLite, HTTP API, router, HTTP long-poll or NATS workers): created (as
// the server creates them, requested in their pool) → dispatched →
// claimed → run → finished stored. It reports tasks/s and the p50/p99 of
// created-to-finished latency and then, in the same run, raw JetStream's
// rate on as many messages (rawJetStream), pipelined and one at a time,
// and the ratio of dispatch to each (of-raw, of-raw-sync). Two workers
// run the tasks, with 64 and with 256 slots each: more tasks in flight make
// larger claims and reports, one store statement for more tasks.
//
//	go test -run '^$' -bench Dispatch -benchtime 10000x -count 3 ./worker/
func BenchmarkDispatch(b *testing.B) {
	for _, tr := range transports {
		for _, slots := range []int{64, 256} {
			b.Run(fmt.Sprintf("%s/slots=%d", tr, slots), func(b *testing.B) { benchDispatch(b, tr, slots) })
		}
	}
}

func benchDispatch(b *testing.B, transport string, slots int) {
	r := newRig(b, scanfleet.DefaultLease, transport)
	for range 2 {
		r.start(worker.Config{Concurrency: slots})
	}
	ctx := context.Background()
	in, _ := json.Marshal(scanfleet.TaskInput{Type: "noop", Workspace: "acme", Args: map[string]any{}})
	tasks := make([]*scanfleet.Task, b.N)
	now := time.Now()
	for i := range tasks {
		tasks[i] = &scanfleet.Task{ID: scanfleet.NewTaskID(), Type: "noop", Workspace: "acme", Pool: scanfleet.PoolExternal,
			Status: scanfleet.TaskRequested, MaxAttempts: 3, Input: in, CreatedAt: now, RequestedAt: &now, UpdatedAt: now}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(tasks); i += 500 {
		batch := tasks[i:min(i+500, len(tasks))]
		require.NoError(b, r.store.CreateTasks(ctx, batch))
		r.router.Submit(batch)
	}
	var lat []time.Duration
	for {
		counts, err := r.store.CountTasksByStatus(ctx)
		require.NoError(b, err)
		if counts[scanfleet.TaskFinished] == int64(b.N) {
			break
		}
		require.Less(b, time.Since(start), 5*time.Minute, "tasks did not finish: %v", counts)
		time.Sleep(200 * time.Millisecond) // the count is not free: look seldom
	}
	b.StopTimer()
	var cursor string
	for {
		page, next, err := r.store.ListTasks(ctx, scanfleet.TaskFilter{Page: scanfleet.Page{Limit: scanfleet.MaxPageLimit, Cursor: cursor}})
		require.NoError(b, err)
		for _, t := range page {
			lat = append(lat, t.FinishedAt.Sub(start))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	// The run ends when the last task was stored finished, not when this
	// loop, which looks seldom, noticed.
	elapsed := lat[len(lat)-1]
	rate := float64(b.N) / elapsed.Seconds()
	raw := rawJetStream(b, b.N, false)
	rawSync := rawJetStream(b, b.N, true)
	b.ReportMetric(rate, "tasks/s")
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(raw, "raw-msgs/s")
	b.ReportMetric(rate/raw, "of-raw")
	b.ReportMetric(rawSync, "raw-sync-msgs/s")
	b.ReportMetric(rate/rawSync, "of-raw-sync")
}

// BenchmarkRawJetStream is the peer of BenchmarkDispatch on its own (which
// measures it too, after each transport, and reports the ratios): b.N
// messages of a dispatch's size published to a work-queue stream on an
// embedded NATS server and pulled and acked, with nothing stored anywhere
// else, pipelined and one at a time.
//
//	go test -run '^$' -bench RawJetStream -benchtime 10000x ./worker/
func BenchmarkRawJetStream(b *testing.B) {
	b.ReportMetric(rawJetStream(b, b.N, false), "msgs/s")
	b.ReportMetric(rawJetStream(b, b.N, true), "sync-msgs/s")
}

// rawJetStream returns messages per second over publishing n messages to
// a work-queue stream on disk and pulling them 256 at a time and acking
// each. Pipelined (sync false), the publishes are asynchronous and the acks
// plain: the engine's best rate. One at a time (sync true), each publish
// waits for its acknowledgment and each ack for the server's confirmation
// (double ack): the rate of a dispatcher that knows each message is
// stored, and each consumer that knows its ack was, before going on, as
// the dispatch path does for every task.
func rawJetStream(b *testing.B, n int, sync bool) float64 {
	ctx := context.Background()
	ns, err := natsbus.StartServer(ctx, natsbus.ServerConfig{Addr: "127.0.0.1:-1", Logger: slog.New(slog.DiscardHandler),
		Authenticate: func(string, string) (string, string, bool) { return "", "", false }})
	require.NoError(b, err)
	defer ns.Shutdown()
	nc, err := ns.InternalConn()
	require.NoError(b, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.WorkQueuePolicy})
	require.NoError(b, err)
	cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(b, err)
	payload := []byte(`{"task_id":"01a1fdb5-470f-7245-a004-790f81419c25","attempt":1}`)
	start := time.Now()
	for range n {
		if sync {
			_, err := js.Publish(ctx, "raw.external._", payload)
			require.NoError(b, err)
			continue
		}
		_, err := js.PublishAsync("raw.external._", payload)
		require.NoError(b, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish acks did not arrive")
	}
	for got := 0; got < n; {
		batch, err := cons.Fetch(min(256, n-got), jetstream.FetchMaxWait(time.Second))
		require.NoError(b, err)
		for m := range batch.Messages() {
			if sync {
				require.NoError(b, m.DoubleAck(ctx))
			} else {
				require.NoError(b, m.Ack())
			}
			got++
		}
	}
	return float64(n) / time.Since(start).Seconds()
}
