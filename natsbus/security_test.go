package natsbus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/natsbus"
)

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t, natsbus.BusConfig{})
	pass := e.emb.reg.add("w-ok", "external", "")
	// A credential whose id could widen its permission subjects: refused
	// before Authenticate is asked, though the registry would accept it.
	badPass := e.emb.reg.add("evil.>", "external", "")

	for _, tc := range []struct{ name, user, pass string }{
		{"anonymous", "", ""},
		{"wrong password", "w-ok", "not-the-password"},
		{"empty password", "w-ok", ""},
		{"unknown worker", "w-unknown", pass},
		{"wildcard worker id", "evil.>", badPass},
		{"server user, wrong password", natsbus.ServerUser, "guess-guess-guess-guess"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nc, err := natsbus.Connect(e.url, tc.user, tc.pass, quiet)
			if err == nil {
				nc.Close()
			}
			require.ErrorIs(t, err, nats.ErrAuthorization)
		})
	}
	t.Run("plain client without credentials", func(t *testing.T) {
		t.Parallel()
		nc, err := nats.Connect(e.url, nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
		}
		require.ErrorIs(t, err, nats.ErrAuthorization)
	})
	t.Run("valid worker", func(t *testing.T) {
		t.Parallel()
		nc, err := natsbus.Connect(e.url, "w-ok", pass, quiet)
		require.NoError(t, err)
		nc.Close()
	})
}

// violations connects a worker and collects its permission violations.
func violations(t *testing.T, e *env, id, pool, site string) (*nats.Conn, <-chan error) {
	errs := make(chan error, 64)
	nc := e.connect(t, id, pool, site, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	return nc, errs
}

func requireViolation(t *testing.T, errs <-chan error, what string) {
	t.Helper()
	select {
	case err := <-errs:
		require.ErrorIs(t, err, nats.ErrPermissionViolation)
		require.Contains(t, err.Error(), what)
	case <-time.After(2 * time.Second):
		t.Fatalf("no permission violation for %s", what)
	}
}

func TestWorkerPermissions(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t, natsbus.BusConfig{})
	stream, prefix := e.cfg.Stream, e.cfg.SubjectPrefix
	require.NoError(t, e.bus.Provision(t.Context(), "external", "east"))
	require.NoError(t, e.bus.Provision(t.Context(), "external", "west"))
	bareID := taskID()
	require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: bareID, Attempt: 1, Pool: "baremetal"}))
	westID := taskID()
	require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: westID, Attempt: 1, Pool: "external", Site: "west"}))
	// The worker under test: pool external, site east.
	nc, errs := violations(t, e, "w-east", "external", "east")
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	requireStored := func() {
		t.Helper()
		n, err := e.bus.Pending(t.Context(), "baremetal")
		require.NoError(t, err)
		require.Equal(t, 1, n, "the baremetal dispatch is untouched")
		n, err = e.bus.Pending(t.Context(), "external")
		require.NoError(t, err)
		require.Equal(t, 1, n, "the west dispatch is untouched")
	}

	t.Run("may use its own consumers", func(t *testing.T) {
		c, err := natsbus.NewConsumer(t.Context(), nc, natsbus.ConsumerConfig{
			Stream: stream, SubjectPrefix: prefix, Pool: "external", Site: "east", WorkerID: "w-east", Logger: quiet,
		})
		require.NoError(t, err)
		ds, err := c.Fetch(t.Context(), 10, 200*time.Millisecond)
		require.NoError(t, err)
		require.Empty(t, ds, "sees neither baremetal nor west dispatches")
		ch, err := c.Commands(t.Context())
		require.NoError(t, err)
		require.NoError(t, e.bus.Command(t.Context(), "w-east", natsbus.Command{Type: natsbus.CommandCancel, TaskID: "x"}))
		require.Equal(t, "x", (<-ch).TaskID)
		select {
		case err := <-errs:
			t.Fatalf("unexpected violation: %v", err)
		default:
		}
	})
	t.Run("cannot bind another pool's consumer", func(t *testing.T) {
		_, err := natsbus.NewConsumer(short(), nc, natsbus.ConsumerConfig{
			Stream: stream, SubjectPrefix: prefix, Pool: "baremetal", WorkerID: "w-east", Logger: quiet,
		})
		require.Error(t, err)
		requireViolation(t, errs, "$JS.API.CONSUMER.INFO."+stream+".baremetal_any")
	})
	t.Run("cannot fetch baremetal dispatches", func(t *testing.T) {
		require.NoError(t, nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+stream+".baremetal_any", "_INBOX.w-east.x", []byte(`{"batch":1}`)))
		requireViolation(t, errs, "$JS.API.CONSUMER.MSG.NEXT."+stream+".baremetal_any")
		requireStored()
	})
	t.Run("cannot fetch another site's dispatches", func(t *testing.T) {
		require.NoError(t, nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+stream+".external_site_west", "_INBOX.w-east.x", []byte(`{"batch":1}`)))
		requireViolation(t, errs, "external_site_west")
		requireStored()
	})
	t.Run("cannot ack another consumer's dispatch", func(t *testing.T) {
		require.NoError(t, nc.Publish("$JS.ACK."+stream+".baremetal_any.1.1.1.1.0", []byte("+ACK")))
		requireViolation(t, errs, "$JS.ACK."+stream+".baremetal_any")
		requireStored()
	})
	t.Run("cannot publish dispatches", func(t *testing.T) {
		require.NoError(t, nc.Publish(prefix+".tasks.external.east", []byte(`{"task_id":"forged","attempt":1}`)))
		requireViolation(t, errs, prefix+".tasks.external.east")
		_, err := js.Publish(short(), prefix+".tasks.baremetal._", []byte(`{"task_id":"forged","attempt":1}`))
		require.Error(t, err)
		requireViolation(t, errs, prefix+".tasks.baremetal._")
		requireStored()
	})
	t.Run("cannot delete or change the stream", func(t *testing.T) {
		require.Error(t, js.DeleteStream(short(), stream))
		requireViolation(t, errs, "$JS.API.STREAM.DELETE."+stream)
		_, err := js.CreateOrUpdateStream(short(), jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".tasks.>"}, Retention: jetstream.LimitsPolicy})
		require.Error(t, err)
		requireViolation(t, errs, "$JS.API.STREAM.")
		requireStored()
	})
	t.Run("cannot create or delete consumers", func(t *testing.T) {
		_, err := js.CreateOrUpdateConsumer(short(), stream, jetstream.ConsumerConfig{Durable: "mine", FilterSubject: prefix + ".tasks.baremetal._"})
		require.Error(t, err)
		requireViolation(t, errs, "$JS.API.CONSUMER.")
		require.Error(t, js.DeleteConsumer(short(), stream, "external_site_east"))
		requireViolation(t, errs, "$JS.API.CONSUMER.DELETE")
	})
	t.Run("cannot read another worker's commands or inbox", func(t *testing.T) {
		for _, subj := range []string{prefix + ".cmd.w-other", prefix + ".cmd.>", "_INBOX.>", "_INBOX.w-other.>", prefix + ".tasks.>"} {
			_, err := nc.SubscribeSync(subj)
			require.NoError(t, err) // refused asynchronously
			requireViolation(t, errs, "Subscription to \""+subj+"\"")
		}
	})
	t.Run("cannot aim its own pull's deliveries at the stream API", func(t *testing.T) {
		// Reply subjects are not permission-checked; make sure a pull
		// request on its own consumer whose reply is an API subject does
		// not act on the stream.
		require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: taskID(), Attempt: 1, Pool: "external", Site: "east"}))
		require.NoError(t, nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+stream+".external_site_east", "$JS.API.STREAM.DELETE."+stream, []byte(`{"batch":1}`)))
		require.NoError(t, nc.Flush())
		time.Sleep(200 * time.Millisecond)
		bjs, err := jetstream.New(e.busConn)
		require.NoError(t, err)
		_, err = bjs.Stream(t.Context(), stream)
		require.NoError(t, err, "the stream still exists")
		requireStored()
	})
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("unexpected async error: %v", err)
		}
	default:
	}
}

// Reply subjects are not permission-checked: a worker's pull request on its
// own consumer may name any reply subject. Aiming the deliveries at another
// pool's task subject must not re-queue them there (the de-duplication
// window has passed, so only the server's delivery rules stop it).
func TestReplySubjectCannotInjectDispatches(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t, natsbus.BusConfig{DuplicateWindow: time.Second})
	stream, prefix := e.cfg.Stream, e.cfg.SubjectPrefix
	require.NoError(t, e.bus.Provision(t.Context(), "external", "east"))
	require.NoError(t, e.bus.Publish(t.Context(), natsbus.Dispatch{TaskID: taskID(), Attempt: 1, Pool: "external", Site: "east"}))
	time.Sleep(1200 * time.Millisecond)
	nc := e.connect(t, "w-east", "external", "east")
	require.NoError(t, nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+stream+".external_site_east", prefix+".tasks.baremetal._", []byte(`{"batch":1}`)))
	require.NoError(t, nc.Flush())
	bare, _ := e.worker(t, "baremetal", "")
	require.Empty(t, fetchIDs(t, bare, 5, 300*time.Millisecond))
	n, err := e.bus.Pending(t.Context(), "baremetal")
	require.NoError(t, err)
	require.Zero(t, n)
}
