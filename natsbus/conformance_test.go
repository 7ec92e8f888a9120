package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/natsbus"
)

// streamMsgs counts the messages stored in the env's stream.
func streamMsgs(t *testing.T, e *env) uint64 {
	t.Helper()
	js, err := jetstream.New(e.busConn)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), e.cfg.Stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

func TestPublishFetchAck(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		w, _ := e.worker(t, "external", "")
		id := taskID()
		require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "external"}))
		require.EqualValues(t, 1, streamMsgs(t, e))

		ds, err := w.Fetch(t.Context(), 10, time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		d := ds[0]
		require.Equal(t, id, d.TaskID)
		require.Equal(t, 1, d.Attempt)
		require.Equal(t, "external", d.Pool)
		require.Equal(t, "", d.Site)
		require.EqualValues(t, 1, d.NumDelivered)
		require.Equal(t, natsbus.DefaultAckWait, w.AckWait())

		require.NoError(t, d.Ack(t.Context()))
		require.EqualValues(t, 0, streamMsgs(t, e), "a work queue drops an acked message")
		require.Empty(t, fetchIDs(t, w, 10, 200*time.Millisecond))
	})
}

func TestRedeliveryAfterAckWait(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{AckWait: 500 * time.Millisecond}, func(t *testing.T, e *env) {
		w, _ := e.worker(t, "internal", "")
		id := taskID()
		require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "internal"}))
		ds, err := w.Fetch(t.Context(), 1, time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		taken := time.Now()

		// Not acked: back after the ack wait.
		ds, err = w.Fetch(t.Context(), 1, 3*time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, id, ds[0].TaskID)
		require.EqualValues(t, 2, ds[0].NumDelivered)
		require.GreaterOrEqual(t, time.Since(taken), 400*time.Millisecond)
		require.NoError(t, ds[0].Ack(t.Context()))
	})
}

func TestInProgressExtendsAckWait(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{AckWait: 500 * time.Millisecond}, func(t *testing.T, e *env) {
		runner, _ := e.worker(t, "external", "")
		other, _ := e.worker(t, "external", "")
		require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: taskID(), Attempt: 1, Pool: "external"}))
		ds, err := runner.Fetch(t.Context(), 1, time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)

		// The task "runs" for 3 ack waits, reporting progress; nobody else
		// gets it meanwhile.
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(150 * time.Millisecond)
			defer tick.Stop()
			for range 10 {
				<-tick.C
				if err := ds[0].InProgress(); err != nil {
					t.Errorf("in progress: %v", err)
					return
				}
			}
		}()
		got, err := other.Fetch(t.Context(), 1, 1300*time.Millisecond)
		require.NoError(t, err)
		require.Empty(t, got, "a dispatch kept in progress is not redelivered")
		<-done
		require.NoError(t, ds[0].Ack(t.Context()))
		require.Empty(t, fetchIDs(t, other, 1, 700*time.Millisecond))
	})
}

func TestNakRedeliversAfterDelay(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		w, _ := e.worker(t, "baremetal", "")
		id := taskID()
		require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "baremetal"}))
		ds, err := w.Fetch(t.Context(), 1, time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)

		require.NoError(t, ds[0].Nak(800*time.Millisecond))
		nakked := time.Now()
		require.Empty(t, fetchIDs(t, w, 1, 300*time.Millisecond), "not before the delay")
		ds, err = w.Fetch(t.Context(), 1, 3*time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, id, ds[0].TaskID)
		require.GreaterOrEqual(t, time.Since(nakked), 700*time.Millisecond)
		require.EqualValues(t, 2, ds[0].NumDelivered)

		// Nak(0) hands back at once.
		require.NoError(t, ds[0].Nak(0))
		ds, err = w.Fetch(t.Context(), 1, time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.EqualValues(t, 3, ds[0].NumDelivered)
		require.NoError(t, ds[0].Ack(t.Context()))
	})
}

func TestDuplicatePublishDeliveredOnce(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		w, _ := e.worker(t, "external", "")
		id := taskID()
		d := natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "external"}
		require.NoError(t, e.bus.Publish(t.Context(), d))
		require.NoError(t, e.bus.Publish(t.Context(), d))
		require.NoError(t, e.bus.PublishBatch(t.Context(), []natsbus.Dispatch{d, d}))
		// Another attempt of the same task is another dispatch.
		require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: id, Attempt: 2, Pool: "external"}))

		ds, err := w.Fetch(t.Context(), 10, 500*time.Millisecond)
		require.NoError(t, err)
		var got []string
		for _, d := range ds {
			got = append(got, fmt.Sprintf("%s/%d", d.TaskID, d.Attempt))
			require.NoError(t, d.Ack(t.Context()))
		}
		require.ElementsMatch(t, []string{id + "/1", id + "/2"}, got)
		require.Empty(t, fetchIDs(t, w, 10, 200*time.Millisecond))
	})
}

func TestPoolIsolation(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		ext, _ := e.worker(t, "external", "")
		bare, _ := e.worker(t, "baremetal", "")
		var extIDs, bareIDs []string
		var ds []natsbus.Dispatch
		for range 5 {
			x, b := taskID(), taskID()
			extIDs, bareIDs = append(extIDs, x), append(bareIDs, b)
			ds = append(ds,
				natsbus.Dispatch{TaskID: x, Attempt: 1, Pool: "external"},
				natsbus.Dispatch{TaskID: b, Attempt: 1, Pool: "baremetal"})
		}
		require.NoError(t, e.bus.PublishBatch(t.Context(), ds))
		require.ElementsMatch(t, extIDs, fetchIDs(t, ext, 100, 300*time.Millisecond))
		require.Empty(t, fetchIDs(t, ext, 100, 200*time.Millisecond))
		require.ElementsMatch(t, bareIDs, fetchIDs(t, bare, 100, 300*time.Millisecond))
	})
}

func TestSiteRouting(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		s1, _ := e.worker(t, "internal", "s1")
		s2, _ := e.worker(t, "internal", "s2")
		anyWorker, _ := e.worker(t, "internal", "")
		pub := func(site string) string {
			id := taskID()
			require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "internal", Site: site}))
			return id
		}

		// A worker without a site takes only any-site dispatches.
		forS1, forAny := pub("s1"), pub("")
		require.Equal(t, []string{forAny}, fetchIDs(t, anyWorker, 10, 300*time.Millisecond))

		// A worker of site s2 never takes s1's dispatch, but takes any-site ones.
		forAny2 := pub("")
		require.Equal(t, []string{forAny2}, fetchIDs(t, s2, 10, 300*time.Millisecond))

		// The s1 worker takes its site's and any-site dispatches.
		forAny3, forS2 := pub(""), pub("s2")
		require.ElementsMatch(t, []string{forS1, forAny3}, fetchIDs(t, s1, 10, 300*time.Millisecond))
		require.Empty(t, fetchIDs(t, anyWorker, 10, 100*time.Millisecond))
		require.Equal(t, []string{forS2}, fetchIDs(t, s2, 10, 300*time.Millisecond))
	})
}

// A site worker waits on two queues at once; when both deliver, or one
// delivers while the other's request is withdrawn, nothing is lost: each
// dispatch is fetched promptly, never after an ack wait (60 s here).
func TestFetchWaitsOnBothQueuesWithoutLoss(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		w, _ := e.worker(t, "external", "east")
		for round := range 15 {
			type result struct {
				ids []string
				err error
			}
			got := make(chan result, 1)
			go func() {
				ds, err := w.Fetch(t.Context(), 1, 5*time.Second)
				var ids []string
				for _, d := range ds {
					ids = append(ids, d.TaskID)
					if err == nil {
						err = d.Ack(t.Context())
					}
				}
				got <- result{ids, err}
			}()
			time.Sleep(20 * time.Millisecond) // let the wait start
			a, b := taskID(), taskID()
			sites := []string{"east", ""}
			if round%2 == 1 {
				sites = []string{"", "east"}
			}
			require.NoError(t, e.bus.PublishBatch(t.Context(), []natsbus.Dispatch{
				{TaskID: a, Attempt: 1, Pool: "external", Site: sites[0]},
				{TaskID: b, Attempt: 1, Pool: "external", Site: sites[1]},
			}))
			r := <-got
			require.NoError(t, r.err)
			require.Len(t, r.ids, 1, "Fetch(max 1) returns one")
			rest := fetchIDs(t, w, 1, 2*time.Second)
			require.Len(t, rest, 1, "round %d: the other dispatch is not swallowed", round)
			require.ElementsMatch(t, []string{a, b}, append(r.ids, rest...))
		}
	})
}

func TestFetchWakesOnPublish(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		w, _ := e.worker(t, "external", "west")
		id := taskID()
		go func() {
			time.Sleep(200 * time.Millisecond)
			_ = e.bus.Publish(context.Background(), natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "external", Site: "west"})
		}()
		start := time.Now()
		require.Equal(t, []string{id}, fetchIDs(t, w, 8, 20*time.Second))
		require.Less(t, time.Since(start), 3*time.Second, "returns on the first delivery, not at the end of the wait")
	})
}

func TestFetchContextCancelHandsBack(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		w, _ := e.worker(t, "external", "")
		ctx, cancel := context.WithCancel(t.Context())
		go func() { time.Sleep(100 * time.Millisecond); cancel() }()
		ds, err := w.Fetch(ctx, 1, 10*time.Second)
		require.ErrorIs(t, err, context.Canceled)
		require.Empty(t, ds)

		// The withdrawn request does not take a dispatch published after.
		id := taskID()
		require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "external"}))
		require.Equal(t, []string{id}, fetchIDs(t, w, 1, time.Second))
	})
}

func TestPublishBatchManyAcrossPoolsAndSites(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		workers := map[string]*natsbus.Consumer{}
		for _, pool := range natsbus.DefaultPools {
			for _, site := range []string{"", "a", "b"} {
				workers[pool+"/"+site], _ = e.worker(t, pool, site)
			}
		}
		var ds []natsbus.Dispatch
		want := map[string]int{}
		for i := range 6000 {
			pool := natsbus.DefaultPools[i%3]
			site := []string{"", "a", "b"}[i/3%3]
			ds = append(ds, natsbus.Dispatch{TaskID: fmt.Sprintf("t%05d", i), Attempt: 1, Pool: pool, Site: site})
			want[pool+"/"+site]++
		}
		require.NoError(t, e.bus.PublishBatch(t.Context(), ds))
		n, err := e.bus.Pending(t.Context(), "internal")
		require.NoError(t, err)
		require.Equal(t, 2000, n)

		// Site workers first take their own sites' dispatches; the
		// site-less workers then drain the rest of the any-site queue.
		total := 0
		for _, key := range []string{"external/a", "external/b", "internal/a", "internal/b", "baremetal/a", "baremetal/b", "external/", "internal/", "baremetal/"} {
			for {
				ids := fetchIDs(t, workers[key], 256, 100*time.Millisecond)
				if len(ids) == 0 {
					break
				}
				total += len(ids)
			}
		}
		require.Equal(t, 6000, total)
		require.EqualValues(t, 0, streamMsgs(t, e))
	})
}

func TestPending(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		w, _ := e.worker(t, "external", "x")
		pending := func(pool string) int {
			n, err := e.bus.Pending(t.Context(), pool)
			require.NoError(t, err)
			return n
		}
		require.Equal(t, 0, pending("external"))
		require.NoError(t, e.bus.PublishBatch(t.Context(), []natsbus.Dispatch{
			{TaskID: taskID(), Attempt: 1, Pool: "external"},
			{TaskID: taskID(), Attempt: 1, Pool: "external", Site: "x"},
			{TaskID: taskID(), Attempt: 1, Pool: "external", Site: "y"}, // no worker of y yet
			{TaskID: taskID(), Attempt: 1, Pool: "baremetal"},
		}))
		require.Equal(t, 3, pending("external"))
		require.Equal(t, 1, pending("baremetal"))
		require.Equal(t, 0, pending("internal"))

		ds, err := w.Fetch(t.Context(), 1, time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, 2, pending("external"), "a held dispatch is not backlog")
		require.NoError(t, ds[0].Ack(t.Context()))
		require.Equal(t, 2, pending("external"))
	})
}

func TestCommands(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		w1, id1 := e.worker(t, "external", "")
		w2, id2 := e.worker(t, "external", "")
		ctx1, cancel1 := context.WithCancel(t.Context())
		defer cancel1()
		ch1, err := w1.Commands(ctx1)
		require.NoError(t, err)
		ch2, err := w2.Commands(t.Context())
		require.NoError(t, err)

		cmd := natsbus.Command{Type: natsbus.CommandCancel, TaskID: taskID()}
		require.NoError(t, e.bus.Command(t.Context(), id1, cmd))
		select {
		case got := <-ch1:
			require.Equal(t, cmd, got)
		case <-time.After(2 * time.Second):
			t.Fatal("worker 1 did not get its command")
		}
		select {
		case got := <-ch2:
			t.Fatalf("worker 2 got worker 1's command %+v", got)
		case <-time.After(200 * time.Millisecond):
		}

		// A worker that is not listening is reported as such.
		err = e.bus.Command(t.Context(), "nobody-"+randHex(4), cmd)
		require.ErrorIs(t, err, natsbus.ErrWorkerUnreachable)

		// Ending the context closes the channel and stops listening.
		cancel1()
		_, open := <-ch1
		require.False(t, open)
		// (The worker's unsubscribe and the next command travel on two
		// connections, so the first try may still race it.)
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			return errors.Is(e.bus.Command(ctx, id1, cmd), natsbus.ErrWorkerUnreachable)
		}, 3*time.Second, 20*time.Millisecond)
		require.NoError(t, e.bus.Command(t.Context(), id2, cmd))
		require.Equal(t, cmd, <-ch2)
	})
}

func TestConcurrentWorkersShareAQueue(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{}, func(t *testing.T, e *env) {
		const n = 600
		var ds []natsbus.Dispatch
		for i := range n {
			ds = append(ds, natsbus.Dispatch{TaskID: fmt.Sprintf("c%04d", i), Attempt: 1, Pool: "internal"})
		}
		require.NoError(t, e.bus.PublishBatch(t.Context(), ds))
		var mu sync.Mutex
		var seen []string
		var wg sync.WaitGroup
		for range 4 {
			w, _ := e.worker(t, "internal", "")
			wg.Go(func() {
				for {
					got, err := w.Fetch(t.Context(), 16, 300*time.Millisecond)
					if err != nil {
						t.Errorf("fetch: %v", err)
						return
					}
					if len(got) == 0 {
						return
					}
					for _, d := range got {
						if err := d.Ack(t.Context()); err != nil {
							t.Errorf("ack: %v", err)
						}
						mu.Lock()
						seen = append(seen, d.TaskID)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		slices.Sort(seen)
		require.Len(t, seen, n)
		require.Len(t, slices.Compact(seen), n, "each dispatch went to one worker")
	})
}

// A site's consumer is deleted by the NATS server once no worker has
// pulled from it for SiteConsumerIdle, so sites that are gone leave
// nothing behind; the pool's any-site consumer stays. A dispatch for the
// site published meanwhile waits in the stream, and a worker of the site
// that starts again (Ensure, as its announcement does) gets it.
func TestIdleSiteConsumerGoesAndComesBack(t *testing.T) {
	t.Parallel()
	eachServer(t, natsbus.BusConfig{SiteConsumerIdle: time.Second}, func(t *testing.T, e *env) {
		ctx := t.Context()
		e.worker(t, "internal", "branch")
		js, err := jetstream.New(e.busConn)
		require.NoError(t, err)
		stream, err := js.Stream(ctx, e.cfg.Stream)
		require.NoError(t, err)
		consumers := func() (site, anySite int) {
			for c := range stream.ListConsumers(ctx).Info() {
				switch {
				case strings.HasSuffix(c.Config.Description, "site branch"):
					site++
				case strings.HasSuffix(c.Config.Description, "any site"):
					anySite++
				}
			}
			return site, anySite
		}
		site, anySite := consumers()
		require.Equal(t, 1, site)
		require.Positive(t, anySite)

		// The worker goes away: its consumer goes after a second idle.
		for _, nc := range e.conns {
			nc.Close()
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			if s, _ := consumers(); s == 0 {
				break
			}
			require.True(t, time.Now().Before(deadline), "the idle site consumer was not deleted")
			time.Sleep(200 * time.Millisecond)
		}
		_, stillAny := consumers()
		require.Equal(t, anySite, stillAny, "any-site consumers stay")

		// A dispatch for the site while it has no consumer is kept, and a
		// worker of the site starting again takes it.
		want := taskID()
		m := &nats.Msg{Subject: e.cfg.SubjectPrefix + ".tasks.internal.branch", Data: []byte(`{"task_id":"` + want + `","attempt":1}`)}
		_, err = js.PublishMsg(ctx, m)
		require.NoError(t, err)
		require.NoError(t, e.bus.Ensure(ctx, "internal", "branch"))
		again, _ := e.worker(t, "internal", "branch")
		require.Equal(t, []string{want}, fetchIDs(t, again, 10, 2*time.Second))
	})
}
