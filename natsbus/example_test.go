package natsbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/scanfleet/scanfleet/natsbus"
)

// The whole path on one machine: the scanfleet server embeds NATS, owns the
// stream and publishes; a worker connects with its credential and takes the
// dispatches of its pool and site.
func Example() {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)

	// The store would check a hashed secret here.
	authenticate := func(user, pass string) (pool, site string, ok bool) {
		if user == "worker-1" && pass == "s3cret-from-enrolment" {
			return "external", "dc1", true
		}
		return "", "", false
	}
	srv, err := natsbus.StartServer(ctx, natsbus.ServerConfig{
		Addr:         "127.0.0.1:-1",
		Authenticate: authenticate,
		Logger:       logger,
	})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()

	// Server side.
	nc, err := srv.InternalConn()
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	bus, err := natsbus.NewBus(ctx, nc, natsbus.BusConfig{Logger: logger})
	if err != nil {
		panic(err)
	}
	// When worker-1 joins (pool external, site dc1):
	if err := bus.Provision(ctx, "external", "dc1"); err != nil {
		panic(err)
	}
	err = bus.PublishBatch(ctx, []natsbus.Dispatch{
		{TaskID: "0190c3a2-0000-7000-8000-000000000001", Attempt: 1, Pool: "external", Site: "dc1"},
		{TaskID: "0190c3a2-0000-7000-8000-000000000002", Attempt: 1, Pool: "external"},
		{TaskID: "0190c3a2-0000-7000-8000-000000000003", Attempt: 1, Pool: "baremetal"},
	})
	if err != nil {
		panic(err)
	}

	// Worker side.
	wc, err := natsbus.Connect(srv.ClientURL(), "worker-1", "s3cret-from-enrolment", logger)
	if err != nil {
		panic(err)
	}
	defer wc.Close()
	consumer, err := natsbus.NewConsumer(ctx, wc, natsbus.ConsumerConfig{
		Pool: "external", Site: "dc1", WorkerID: "worker-1", Logger: logger,
	})
	if err != nil {
		panic(err)
	}
	n := 0
	for n < 2 {
		ds, err := consumer.Fetch(ctx, 8, time.Second)
		if err != nil {
			panic(err)
		}
		for _, d := range ds {
			// ... run the task, report its outcome to the server, then:
			if err := d.Ack(ctx); err != nil {
				panic(err)
			}
			n++
		}
	}
	backlog, err := bus.Pending(ctx, "baremetal")
	if err != nil {
		panic(err)
	}
	fmt.Println("external tasks run:", n)
	fmt.Println("baremetal backlog:", backlog)
	// Output:
	// external tasks run: 2
	// baremetal backlog: 1
}
