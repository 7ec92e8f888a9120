package natsbus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/natsbus"
)

const benchMsgs = 20_000

// BenchmarkPublishAck pushes 20,000 dispatches through PublishBatch and
// takes them with Fetch(256) + Ack on the embedded server (file storage,
// auth on), the publisher in-process as the scanfleet server, the consumer
// over TCP as a worker; publishing and taking run concurrently. In the same
// run, the raw JetStream baseline sends 20,000 messages of the same payload
// size with js.PublishAsync (no message id; and again with one, to show what
// de-duplication costs) and takes them with jetstream
// Fetch(256) + Ack on the same server, over the same kinds of connection.
// Both are measured with confirmed acks (Delivery.Ack vs Msg.DoubleAck) and
// with plain ones (Delivery.AckAsync vs Msg.Ack). Confirmed acks of a batch
// go out concurrently, as a worker's finishing tasks would send them; plain
// acks do not block, so they are sent in a loop.
//
//	go test -run '^$' -bench PublishAck -benchtime 3x ./natsbus
func BenchmarkPublishAck(b *testing.B) {
	ctx := context.Background()
	reg := &registry{}
	emb := startEmbedded(b, "127.0.0.1:-1", b.TempDir(), reg)
	pubConn, err := emb.srv.InternalConn()
	require.NoError(b, err)
	defer pubConn.Close()
	bus, err := natsbus.NewBus(ctx, pubConn, natsbus.BusConfig{Logger: quiet})
	require.NoError(b, err)
	require.NoError(b, bus.Provision(ctx, "external", ""))
	e := &env{bus: bus, busConn: pubConn, emb: emb, url: emb.srv.ClientURL(), cfg: natsbus.BusConfig{}.WithDefaults()}
	worker, _ := e.worker(b, "external", "")

	// The raw baseline: its own work-queue stream and durable consumer.
	js, err := jetstream.New(pubConn)
	require.NoError(b, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.WorkQueuePolicy})
	require.NoError(b, err)
	_, err = js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(b, err)
	user, pass := emb.srv.Credentials()
	rawConn, err := natsbus.Connect(e.url, user, pass, quiet)
	require.NoError(b, err)
	defer rawConn.Close()
	rawJS, err := jetstream.New(rawConn)
	require.NoError(b, err)
	rawCons, err := rawJS.Consumer(ctx, "RAW", "raw")
	require.NoError(b, err)

	publish := func(ds []natsbus.Dispatch) func() error {
		return func() error { return bus.PublishBatch(ctx, ds) }
	}
	busTake := func(ack func(*natsbus.Delivery) error, concurrent bool) func(int) (int, error) {
		return func(max int) (int, error) {
			got, err := worker.Fetch(ctx, max, time.Second)
			if err != nil {
				return 0, err
			}
			if !concurrent {
				for _, d := range got {
					if err := ack(d); err != nil {
						return 0, err
					}
				}
				return len(got), nil
			}
			var wg sync.WaitGroup
			errs := make(chan error, len(got))
			for _, d := range got {
				wg.Go(func() {
					if err := ack(d); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			return len(got), <-errs
		}
	}
	rawPublish := func(payload []byte, msgIDs []natsbus.Dispatch) func() error {
		return func() error {
			for j := range benchMsgs {
				var err error
				if msgIDs == nil {
					_, err = js.PublishAsync("raw.x", payload)
				} else {
					_, err = js.PublishMsgAsync(&nats.Msg{Subject: "raw.x", Data: payload,
						Header: nats.Header{jetstream.MsgIDHeader: []string{msgIDs[j].TaskID + "/1"}}})
				}
				if err != nil {
					return err
				}
			}
			select {
			case <-js.PublishAsyncComplete():
				return nil
			case <-time.After(30 * time.Second):
				return fmt.Errorf("raw publish: acks timed out")
			}
		}
	}
	rawTake := func(ack func(jetstream.Msg) error, concurrent bool) func(int) (int, error) {
		return func(max int) (int, error) {
			batch, err := rawCons.Fetch(max, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return 0, err
			}
			if !concurrent {
				n := 0
				for m := range batch.Messages() {
					if err := ack(m); err != nil {
						return n, err
					}
					n++
				}
				return n, batch.Error()
			}
			var wg sync.WaitGroup
			errs := make(chan error, max)
			n := 0
			for m := range batch.Messages() {
				n++
				wg.Go(func() {
					if err := ack(m); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				return n, err
			}
			return n, batch.Error()
		}
	}

	var busAck, busAckAsync, rawAck, rawDoubleAck, rawMsgIDAck time.Duration
	for i := 0; i < b.N; i++ {
		batches := make([][]natsbus.Dispatch, 3)
		for k := range batches {
			batches[k] = make([]natsbus.Dispatch, benchMsgs)
			for j := range batches[k] {
				batches[k][j] = natsbus.Dispatch{TaskID: fmt.Sprintf("%08x-%04x-7000-8000-%012x", i, k, j), Attempt: 1, Pool: "external"}
			}
		}
		payload, _ := json.Marshal(map[string]any{"task_id": batches[0][0].TaskID, "attempt": 1})

		busAck += timed(b, publish(batches[0]), busTake(func(d *natsbus.Delivery) error { return d.Ack(ctx) }, true))
		rawDoubleAck += timed(b, rawPublish(payload, nil), rawTake(func(m jetstream.Msg) error { return m.DoubleAck(ctx) }, true))
		busAckAsync += timed(b, publish(batches[1]), busTake((*natsbus.Delivery).AckAsync, false))
		rawAck += timed(b, rawPublish(payload, nil), rawTake(jetstream.Msg.Ack, false))
		rawMsgIDAck += timed(b, rawPublish(payload, batches[2]), rawTake(jetstream.Msg.Ack, false))
	}
	rate := func(d time.Duration) float64 { return float64(b.N*benchMsgs) / d.Seconds() }
	b.ReportMetric(rate(busAck), "natsbus-ack-msgs/s")
	b.ReportMetric(rate(busAckAsync), "natsbus-ackasync-msgs/s")
	b.ReportMetric(rate(rawAck), "raw-ack-msgs/s")
	b.ReportMetric(rate(rawDoubleAck), "raw-doubleack-msgs/s")
	b.ReportMetric(rate(rawMsgIDAck), "raw-msgid-ack-msgs/s")
	b.ReportMetric(rate(busAckAsync)/rate(rawAck), "ratio-ackasync/raw-ack")
	b.ReportMetric(rate(busAck)/rate(rawAck), "ratio-ack/raw-ack")
	b.Logf("%d msgs x %d: natsbus Ack %.0f/s, natsbus AckAsync %.0f/s; raw JetStream Ack %.0f/s, DoubleAck %.0f/s, Ack with msg id %.0f/s",
		benchMsgs, b.N, rate(busAck), rate(busAckAsync), rate(rawAck), rate(rawDoubleAck), rate(rawMsgIDAck))
	b.Logf("ratios: AckAsync/raw Ack %.2f, Ack/raw Ack %.2f, Ack/raw DoubleAck %.2f, AckAsync/raw Ack with msg id %.2f",
		rate(busAckAsync)/rate(rawAck), rate(busAck)/rate(rawAck), rate(busAck)/rate(rawDoubleAck), rate(busAckAsync)/rate(rawMsgIDAck))
}

// timed runs publish and, concurrently, take until benchMsgs messages were
// taken, and returns the elapsed time. take asks for at most 256, fewer for
// the last batch, so that no run waits out an expiry at its end.
func timed(b *testing.B, publish func() error, take func(max int) (int, error)) time.Duration {
	start := time.Now()
	pubErr := make(chan error, 1)
	go func() { pubErr <- publish() }()
	for n := 0; n < benchMsgs; {
		k, err := take(min(256, benchMsgs-n))
		require.NoError(b, err)
		n += k
	}
	require.NoError(b, <-pubErr)
	return time.Since(start)
}
