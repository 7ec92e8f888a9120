// Package scheduler turns enabled scans into tasks, as Crossfeed's
// scheduler does, without its stuck tasks.
//
// Each tick (Config.Interval), on the one server replica that holds the
// scheduler lease in the store, it:
//
//   - releases queued tasks, oldest first, while their pool has room
//     (Config.MaxActive, Config.MaxActiveTotal), before any new work;
//   - for each enabled scan and each of its workspaces, starts a run when
//     the scan has a manual run pending, or when no task of the scan in that
//     workspace is created, queued, requested or started and the last one
//     ended more than the scan's frequency ago (or its next cron time has
//     passed). A single-run scan runs once. A run is one task per target
//     chunk (Scan.ChunkSize); tasks over capacity are stored queued with
//     their whole input;
//   - turns tasks that failed and scans whose run ended into webhook
//     events (task.failed, scan.finished), stored in the delivery outbox,
//     and delivers due ones with retries.
//
// A run where one is in flight is never started twice: the store refuses
// it in the same transaction that would create it, whichever replica asks.
package scheduler
