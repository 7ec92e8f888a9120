package scanfleet

import "context"

// Store is the whole persistent state of a scanfleet server. The sqlite and
// postgres packages implement it over one schema; storetest.Run holds the
// suite both pass.
type Store interface {
	WorkspaceStore
	ScanStore
	TaskStore
	RecordStore
	TokenStore
	CloudStore
	WorkerStore
	LeaseStore
	ArtifactStore
	ScheduleStore
	WebhookStore
	Ping(ctx context.Context) error
	Close() error
}
