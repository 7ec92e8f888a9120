// Package natsbus is scanfleet's NATS JetStream transport: it carries
// dispatches (which task attempt to run) from the server to the workers of a
// pool, durably, with ack, in-progress and redelivery, and commands (cancel)
// from the server to one worker. The store stays the source of truth for a
// task's status and lease; a dispatch only says "run attempt N of task T",
// so a redelivered or duplicated dispatch is settled by the store.
//
// # Stream and subjects
//
// One stream (DefaultStream, SCANFLEET_TASKS) with work-queue retention holds
// every dispatch on <prefix>.tasks.<pool>.<site>, site "_" (AnySite) for a
// dispatch any site's worker may take. The payload is
// {"task_id":"…","attempt":N} and the Nats-Msg-Id header is <task_id>/<attempt>,
// so a second publish of one attempt within the duplicate window is dropped
// by JetStream. Commands are core NATS requests on <prefix>.cmd.<worker_id>,
// not stored: a worker that is offline misses them and learns the outcome
// from the store.
//
// # Consumers: why two per site worker
//
// A work-queue stream hands each message to one consumer only, so the
// filter subjects of its consumers must not overlap (nats-server refuses an
// overlapping one: "filtered consumer not unique on workqueue stream",
// 10100), and the FilterSubjects of one consumer must not overlap each other
// either (10138). A single consumer per site filtering [P.S, P._] is
// therefore impossible as soon as two sites exist: both would claim P._.
// Instead there are
//
//   - one durable consumer per pool for P._ (named <pool>_any), shared by
//     every worker of the pool, whatever its site;
//   - one durable consumer per pool and site for P.S (<pool>_site_<site>),
//     shared by the workers of that site.
//
// Workers of one consumer pull from it concurrently and JetStream spreads the
// messages between them. A worker of site S pulls from both its consumers,
// alternating which it asks first so neither queue starves; a worker without
// a site pulls only from <pool>_any. A worker of site T has no right to
// <pool>_site_S, so it never sees S's dispatches. This needs nothing newer
// than nats-server 2.9 (the suite also runs against 2.9.10).
//
// Consumers are created by the server side only (Bus.Provision, at a
// worker's join and on the first dispatch to a site); workers bind to them
// (NewConsumer) and have no right to create or change them. Every consumer
// has explicit acks, BusConfig.AckWait, unlimited deliveries (the server's
// lease reaper decides when an attempt has failed) and DeliverAll.
//
// # Fetching
//
// Consumer.Fetch first takes what is ready (no-wait pull requests), and only
// when nothing is, waits on both queues at once with a one-message request
// each, returning on the first delivery and topping up without waiting. It
// speaks the pull protocol itself rather than through jetstream.Fetch so a
// waiting request can be withdrawn without losing a message in flight: its
// inbox subscription is drained (the server stops serving a request whose
// reply subject lost interest) and a flush collects what was already sent. A
// message taken beyond max is handed back at once (Nak). Pull requests are
// never buffered across a reconnect (a replayed request could deliver to
// nobody until the ack wait ran out); a Fetch during an outage waits for the
// connection within its wait and returns empty.
//
// A worker calls Delivery.InProgress while the task runs (well within
// Consumer.AckWait), Delivery.Ack once the server has stored the outcome
// (AckAsync skips the confirmation round trip), and Delivery.Nak(delay) to
// hand a dispatch back, e.g. when draining.
//
// # Security
//
// The embedded server (StartServer) admits no anonymous connection. Its
// custom authentication hook lets ServerUser in with its password and every
// other user through ServerConfig.Authenticate (user = worker id, password =
// the worker's secret, checked by the store), then gives a worker exactly
// WorkerPermissions: publish pull requests, consumer info requests and acks
// for its own consumers only, subscribe to its own inbox (_INBOX.<worker_id>.>,
// which Connect sets as its inbox prefix) and its own command subject, and
// answer the commands it receives. A worker cannot publish dispatches, manage
// streams or consumers, or read another pool's, site's or worker's messages.
// A worker id that is not a plain subject token is refused before
// Authenticate is asked, so it cannot widen those subjects.
//
// An external NATS server (Connect to its URL) runs the same code with its
// own authentication; WorkerPermissions shows what to grant there.
package natsbus
