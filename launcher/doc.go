// Package launcher starts workers when their pool has work, so that
// capacity follows the backlog: launched workers run "scanfleet worker"
// with an idle timeout and exit by themselves once the work is done.
//
// # Policy
//
// Every Interval (and at once on Wake) the launcher reads, for each
// configured pool, the backlog (tasks waiting for a worker), the workers
// and what each backend runs, and counts:
//
//   - live: workers of the pool that are online, busy or idle and not
//     draining, except those whose process or instance the launcher saw
//     end (their record lags by scanfleet.OfflineAfter);
//   - starting: workers it launched that have not enrolled yet, plus
//     instances the backend runs for the pool that nobody follows (after
//     a restart) and whose worker is not live. A backend that cannot list
//     what it runs makes a launch count as starting for StartGrace;
//   - free: task slots left on live workers of the pool's site.
//
// It then launches min(⌈(backlog − free) / Concurrency⌉ − starting,
// Max − live − starting) workers, so a pool never has more than Max
// workers, launched or not. Every worker is started with a fresh one-time
// join token pinned to its pool and site, and is named after its Instance
// ID; when a worker of that name enrols the launch counts as done.
//
// A failed launch is recorded and the pool backs off: the next tick may
// try again, then each wait doubles up to MaxBackoff. A worker that stops
// before it enrolls counts as a failure too, so a worker that cannot start
// is not relaunched in a tight loop. A backend at its own maximum
// (ErrAtMax) ends the pool's launches for this tick without backing off.
//
// Attempts returns the recorded attempts, newest first: when, which pool
// and backend, the outcome (a closed set: launched, at-max, no-capacity,
// failed), the instance, every placement tried, the error, and the worker
// it became. Repeated identical failures are folded into one entry. Pools
// returns what the last pass saw of each busy pool: backlog, live and
// starting workers, and any backoff.
//
// # Backends
//
// Process starts "scanfleet worker" subprocesses on this machine, each in
// its own process group with its own state file and log under a work
// directory; it reaps them as they exit and Stop ends the ones left
// (SIGTERM, then SIGKILL after a grace). The join token goes in the
// worker's environment, not on its command line.
//
// EC2 runs one instance per worker from a launch template, with user data
// (a shell script, DefaultUserData) that starts the worker with the server
// URL and join token and powers the instance off when the worker exits;
// the instance's shutdown behaviour is terminate. When AWS has no capacity
// it falls back as mrpf does: each instance type in the first subnet,
// then each in the next subnet, until one launches or all are exhausted;
// the error then lists every try. InsufficientInstanceCapacity and
// Unsupported move on to the next type; InstanceLimitExceeded and
// VcpuLimitExceeded are regional quotas, so the type is dropped for the
// other subnets too; any other error ends the launch at once. The SDK's
// retryer is told not to retry the fallback errors (EC2 sends
// InsufficientInstanceCapacity as HTTP 500, which it would otherwise
// retry in place). Its Max (default 5, mrpf's MAX_BARE_METAL_WORKERS)
// counts the fleet's pending and running instances with DescribeInstances,
// by the scanfleet:fleet tag.
//
// A Kubernetes backend (a Job per worker) fits the same interface: Launch
// creates the Job with the request as its container's arguments and the
// join token in a Secret; Running lists the Jobs by label.
package launcher
