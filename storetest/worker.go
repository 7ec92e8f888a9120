package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// createJoinToken stores a join token for the pool and site ("" for any)
// that expires at expires, and returns it with its secret.
func createJoinToken(t *testing.T, s scanfleet.Store, pool scanfleet.Pool, site string, expires time.Time) (*scanfleet.JoinToken, string) {
	t.Helper()
	secret, hash, err := scanfleet.NewSecret(scanfleet.JoinTokenPrefix)
	require.NoError(t, err)
	tok := &scanfleet.JoinToken{Name: "join " + string(pool) + " " + site, Pool: pool, Site: site, Hash: hash, CreatedAt: t0, ExpiresAt: expires}
	require.NoError(t, s.CreateJoinToken(t.Context(), tok))
	require.NotEmpty(t, tok.ID)
	return tok, secret
}

// newWorker returns an unsaved worker with a fresh credential.
func newWorker(t *testing.T, name string, pool scanfleet.Pool, site string) *scanfleet.Worker {
	t.Helper()
	_, hash, err := scanfleet.NewSecret(scanfleet.WorkerCredPrefix)
	require.NoError(t, err)
	return &scanfleet.Worker{
		Name:         name,
		Pool:         pool,
		Site:         site,
		Version:      "v1.2.3",
		Capabilities: []scanfleet.Requirement{scanfleet.RequireRawSockets},
		Executors:    []string{"portscan", "synscan"},
		Transport:    "nats",
		Concurrency:  4,
		Hash:         hash,
	}
}

// enrol enrols a worker with a fresh token of its own at now.
func enrol(t *testing.T, s scanfleet.Store, w *scanfleet.Worker, now time.Time) *scanfleet.Worker {
	t.Helper()
	_, secret := createJoinToken(t, s, "", "", now.Add(time.Hour))
	require.NoError(t, s.EnrolWorker(t.Context(), scanfleet.HashToken(secret), w, now))
	return w
}

// requireWorker checks every stored field of got against want; State is
// checked where the test knows the clock.
func requireWorker(t *testing.T, want, got *scanfleet.Worker) {
	t.Helper()
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.Name, got.Name)
	require.Equal(t, want.Pool, got.Pool)
	require.Equal(t, want.Site, got.Site)
	require.Equal(t, want.Version, got.Version)
	require.Equal(t, want.Capabilities, got.Capabilities)
	require.Equal(t, want.Executors, got.Executors)
	require.Equal(t, want.Transport, got.Transport)
	require.Equal(t, want.Concurrency, got.Concurrency)
	require.Equal(t, want.Running, got.Running)
	require.Equal(t, want.Draining, got.Draining)
	require.Equal(t, want.Hash, got.Hash)
	requireTime(t, want.CreatedAt, got.CreatedAt, "created_at")
	requireTime(t, want.LastSeenAt, got.LastSeenAt, "last_seen_at")
}

// joinRefused is the one message for an unknown, used or expired token.
const joinRefused = "join token is unknown, used or expired"

var workerTests = map[string]func(*testing.T, scanfleet.Store){
	"EnrolFind": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		tok, secret := createJoinToken(t, s, scanfleet.PoolBaremetal, "dc1", at(time.Hour))
		w := newWorker(t, "scanner-1", scanfleet.PoolBaremetal, "dc1")
		now := at(time.Minute)
		require.NoError(t, s.EnrolWorker(ctx, scanfleet.HashToken(secret), w, now))
		require.NotEmpty(t, w.ID)
		requireTime(t, now, w.CreatedAt, "created_at")
		requireTime(t, now, w.LastSeenAt, "last_seen_at")
		require.Equal(t, scanfleet.WorkerIdle, w.State)

		got, err := s.FindWorker(ctx, w.ID)
		require.NoError(t, err)
		requireWorker(t, w, got)
		got, err = s.FindWorkerByHash(ctx, w.Hash)
		require.NoError(t, err)
		requireWorker(t, w, got)
		// Found workers get their state at the store's clock, long after t0.
		require.Equal(t, scanfleet.WorkerOffline, got.State)

		// The token is spent, also for a worker that would fit it.
		err = s.EnrolWorker(ctx, tok.Hash, newWorker(t, "scanner-2", scanfleet.PoolBaremetal, "dc1"), now)
		requireCode(t, err, scanfleet.EUNAUTHORIZED, joinRefused)
	},
	"EnrolEmptyLists": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		w := newWorker(t, "bare", scanfleet.PoolExternal, "")
		w.Capabilities, w.Executors = nil, nil
		enrol(t, s, w, time.Now())
		got, err := s.FindWorker(ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, []scanfleet.Requirement{}, got.Capabilities, "[] rather than null in the API")
		require.Equal(t, []string{}, got.Executors)
		require.Equal(t, scanfleet.WorkerIdle, got.State, "enrolled just now")
	},
	"EnrolRefused": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		now := at(time.Hour)
		for _, tc := range []struct {
			name  string
			token func() string // the join hash to present
			pool  scanfleet.Pool
			site  string
			code  string
			msg   string
			// fits is the pool and site the token takes, when the refusal
			// leaves it unused.
			fits *[2]string
		}{
			{"unknown", func() string { return scanfleet.HashToken("sfj_nope") }, scanfleet.PoolExternal, "", scanfleet.EUNAUTHORIZED, joinRefused, nil},
			{"expired", func() string {
				tok, _ := createJoinToken(t, s, "", "", now.Add(-time.Second))
				return tok.Hash
			}, scanfleet.PoolExternal, "", scanfleet.EUNAUTHORIZED, joinRefused, nil},
			{"expiring now", func() string {
				tok, _ := createJoinToken(t, s, "", "", now)
				return tok.Hash
			}, scanfleet.PoolExternal, "", scanfleet.EUNAUTHORIZED, joinRefused, nil},
			{"used", func() string {
				tok, _ := createJoinToken(t, s, "", "", now.Add(time.Hour))
				require.NoError(t, s.EnrolWorker(ctx, tok.Hash, newWorker(t, "first", scanfleet.PoolExternal, ""), now))
				return tok.Hash
			}, scanfleet.PoolExternal, "", scanfleet.EUNAUTHORIZED, joinRefused, nil},
			{"another pool", func() string {
				tok, _ := createJoinToken(t, s, scanfleet.PoolBaremetal, "", now.Add(time.Hour))
				return tok.Hash
			}, scanfleet.PoolExternal, "", scanfleet.EFORBIDDEN, `join token is for pool "baremetal", not pool "external"`, &[2]string{"baremetal", ""}},
			{"another site", func() string {
				tok, _ := createJoinToken(t, s, scanfleet.PoolExternal, "dc1", now.Add(time.Hour))
				return tok.Hash
			}, scanfleet.PoolExternal, "dc2", scanfleet.EFORBIDDEN, `join token is for site "dc1", not site "dc2"`, &[2]string{"external", "dc1"}},
			{"no site for a site's token", func() string {
				tok, _ := createJoinToken(t, s, "", "dc1", now.Add(time.Hour))
				return tok.Hash
			}, scanfleet.PoolInternal, "", scanfleet.EFORBIDDEN, `join token is for site "dc1", not site ""`, &[2]string{"internal", "dc1"}},
			{"no pool", func() string {
				tok, _ := createJoinToken(t, s, "", "", now.Add(time.Hour))
				return tok.Hash
			}, "", "", scanfleet.EINVALID, `pool: "" is not one of external, internal, baremetal`, &[2]string{"external", ""}},
		} {
			hash := tc.token()
			before, err := s.ListWorkers(ctx, now)
			require.NoError(t, err)
			w := newWorker(t, tc.name, tc.pool, tc.site)
			err = s.EnrolWorker(ctx, hash, w, now)
			requireCode(t, err, tc.code, tc.msg)
			after, err := s.ListWorkers(ctx, now)
			require.NoError(t, err)
			require.Len(t, after, len(before), "%s: no worker stored", tc.name)
			if tc.fits != nil {
				// A refusal for the wrong pool or site leaves the token
				// unused, so the operator can fix the worker's flags.
				w := newWorker(t, tc.name, scanfleet.Pool(tc.fits[0]), tc.fits[1])
				require.NoError(t, s.EnrolWorker(ctx, hash, w, now), tc.name)
			}
		}
		w := newWorker(t, "no credential", scanfleet.PoolExternal, "")
		w.Hash = ""
		_, secret := createJoinToken(t, s, "", "", now.Add(time.Hour))
		requireCode(t, s.EnrolWorker(ctx, scanfleet.HashToken(secret), w, now), scanfleet.EINVALID)
	},
	"EnrolRace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		for round := range 10 {
			_, secret := createJoinToken(t, s, "", "", at(time.Hour))
			errs := make([]error, 4)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range errs {
				w := newWorker(t, fmt.Sprintf("r%d-w%d", round, i), scanfleet.PoolExternal, "")
				wg.Go(func() {
					<-start
					errs[i] = s.EnrolWorker(ctx, scanfleet.HashToken(secret), w, at(time.Minute))
				})
			}
			close(start)
			wg.Wait()
			wins := 0
			for _, err := range errs {
				if err == nil {
					wins++
				} else {
					requireCode(t, err, scanfleet.EUNAUTHORIZED, joinRefused)
				}
			}
			require.Equal(t, 1, wins, "round %d: exactly one enrolment wins", round)
		}
		workers, err := s.ListWorkers(ctx, at(time.Minute))
		require.NoError(t, err)
		require.Len(t, workers, 10)
	},
	"JoinTokenErrors": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		tok, _ := createJoinToken(t, s, "", "", at(time.Hour))
		dup := *tok
		dup.ID, dup.Name = "", "copy"
		requireCode(t, s.CreateJoinToken(ctx, &dup), scanfleet.ECONFLICT, `join token "copy" already exists`)
		for _, tc := range []struct {
			name string
			tok  scanfleet.JoinToken
			msg  string
		}{
			{"no hash", scanfleet.JoinToken{ExpiresAt: at(time.Hour)}, "join token: hash is empty"},
			{"no expiry", scanfleet.JoinToken{Hash: "h1"}, "join token: expires_at is not set"},
			{"unknown pool", scanfleet.JoinToken{Hash: "h2", ExpiresAt: at(time.Hour), Pool: "gpu"}, `pool: "gpu" is not one of external, internal, baremetal`},
		} {
			requireCode(t, s.CreateJoinToken(ctx, &tc.tok), scanfleet.EINVALID, tc.msg)
		}
	},
	"ListStates": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		now := at(time.Hour)
		list, err := s.ListWorkers(ctx, now)
		require.NoError(t, err)
		require.NotNil(t, list)
		require.Empty(t, list)
		cases := []struct {
			name        string
			concurrency int
			hb          scanfleet.Heartbeat
			seen        time.Duration // before now
			state       scanfleet.WorkerState
		}{
			{"idle", 4, scanfleet.Heartbeat{}, time.Second, scanfleet.WorkerIdle},
			{"online", 4, scanfleet.Heartbeat{Running: 2}, time.Second, scanfleet.WorkerOnline},
			{"busy", 4, scanfleet.Heartbeat{Running: 4}, time.Second, scanfleet.WorkerBusy},
			{"draining", 4, scanfleet.Heartbeat{Running: 1, Draining: true}, time.Second, scanfleet.WorkerOnline},
			{"just online", 1, scanfleet.Heartbeat{}, scanfleet.OfflineAfter, scanfleet.WorkerIdle},
			{"offline", 4, scanfleet.Heartbeat{Running: 4}, scanfleet.OfflineAfter + time.Microsecond, scanfleet.WorkerOffline},
		}
		want := map[string]*scanfleet.Worker{}
		for i, tc := range cases {
			w := newWorker(t, fmt.Sprintf("worker %d", len(cases)-i), scanfleet.PoolExternal, "")
			w.Concurrency = tc.concurrency
			enrol(t, s, w, t0)
			seen := now.Add(-tc.seen)
			require.NoError(t, s.HeartbeatWorker(ctx, w.ID, tc.hb, seen))
			w.LastSeenAt, w.Running, w.Draining, w.State = seen, tc.hb.Running, tc.hb.Draining, tc.state
			want[w.ID] = w
		}
		// Two workers of one name are told apart by id.
		twin := enrol(t, s, newWorker(t, "worker 1", scanfleet.PoolInternal, "dc1"), now)
		twin.State = scanfleet.WorkerIdle
		want[twin.ID] = twin

		list, err = s.ListWorkers(ctx, now)
		require.NoError(t, err)
		require.Len(t, list, len(want))
		for i, got := range list {
			w := want[got.ID]
			require.NotNil(t, w, "unknown worker %s", got.ID)
			requireWorker(t, w, got)
			require.Equal(t, w.State, got.State, w.Name)
			if i > 0 {
				prev := list[i-1]
				require.True(t, prev.Name < got.Name || prev.Name == got.Name && prev.ID < got.ID,
					"%s/%s before %s/%s", prev.Name, prev.ID, got.Name, got.ID)
			}
		}
	},
	"Heartbeat": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		w := enrol(t, s, newWorker(t, "w", scanfleet.PoolExternal, ""), t0)
		for i, hb := range []scanfleet.Heartbeat{{Running: 3}, {Running: 1, Draining: true}, {}} {
			seen := at(time.Duration(i+1) * 10 * time.Second)
			require.NoError(t, s.HeartbeatWorker(ctx, w.ID, hb, seen))
			w.LastSeenAt, w.Running, w.Draining = seen, hb.Running, hb.Draining
			got, err := s.FindWorker(ctx, w.ID)
			require.NoError(t, err)
			requireWorker(t, w, got)
		}
		requireCode(t, s.HeartbeatWorker(ctx, w.ID, scanfleet.Heartbeat{Running: -1}, t0), scanfleet.EINVALID, "running: -1 is negative")
		requireCode(t, s.HeartbeatWorker(ctx, "ghost", scanfleet.Heartbeat{}, t0), scanfleet.ENOTFOUND, `worker "ghost" not found`)
	},
	"JoinTokensListDelete": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		a, _ := createJoinToken(t, s, scanfleet.PoolExternal, "", at(time.Hour))
		b, secret := createJoinToken(t, s, scanfleet.PoolBaremetal, "dc1", at(2*time.Hour))
		list, err := s.ListJoinTokens(ctx)
		require.NoError(t, err)
		require.Len(t, list, 2)
		ids := []string{list[0].ID, list[1].ID}
		require.ElementsMatch(t, []string{a.ID, b.ID}, ids)
		for _, tok := range list {
			require.Empty(t, tok.Hash, "a listed token carries no hash")
			if tok.ID == b.ID {
				require.Equal(t, scanfleet.PoolBaremetal, tok.Pool)
				require.Equal(t, "dc1", tok.Site)
				requireTime(t, at(2*time.Hour), tok.ExpiresAt, "expires_at")
				require.Nil(t, tok.UsedAt)
			}
		}
		require.NoError(t, s.DeleteJoinToken(ctx, b.ID))
		requireCode(t, s.DeleteJoinToken(ctx, b.ID), scanfleet.ENOTFOUND, fmt.Sprintf("join token %q not found", b.ID))
		// A revoked token enrols nobody.
		w := newWorker(t, "w", scanfleet.PoolBaremetal, "dc1")
		requireCode(t, s.EnrolWorker(ctx, scanfleet.HashToken(secret), w, at(time.Minute)), scanfleet.EUNAUTHORIZED)
		list, err = s.ListJoinTokens(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
	},
	"Revoke": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		w := enrol(t, s, newWorker(t, "w", scanfleet.PoolExternal, ""), t0)
		createWorkspace(t, s, "a")
		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		claim(t, s, task, w.ID, t0)
		require.NoError(t, s.RevokeWorker(ctx, w.ID, at(time.Second)))
		_, err := s.FindWorkerByHash(ctx, w.Hash)
		requireCode(t, err, scanfleet.ENOTFOUND)
		// Its task is handed back at once, the attempt not counted.
		back, err := s.FindTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, scanfleet.TaskRequested, back.Status)
		require.Equal(t, 0, back.Attempts)
		require.Empty(t, back.WorkerID)
		require.Nil(t, back.LeaseExpiresAt)
		requireCode(t, s.RevokeWorker(ctx, w.ID, at(time.Minute)), scanfleet.ENOTFOUND)
	},
	"Announce": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		w := enrol(t, s, newWorker(t, "w", scanfleet.PoolExternal, ""), t0)
		et := scanfleet.NewExecutorType(&scanfleet.TaskType{Name: "nmap", Timeout: time.Minute,
			Params: []scanfleet.Param{{Name: "TARGET", Type: scanfleet.ParamList}}})
		a := scanfleet.Announcement{Version: "v2", Capabilities: []scanfleet.Requirement{}, Executors: []string{"noop", "nmap"},
			Types: []scanfleet.ExecutorType{et}}
		require.NoError(t, s.AnnounceWorker(ctx, w.ID, a, at(time.Minute)))
		got, err := s.FindWorker(ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, "v2", got.Version)
		require.Equal(t, []string{"noop", "nmap"}, got.Executors)
		require.Len(t, got.Types, 1)
		require.Equal(t, time.Minute, got.Types[0].Type().Timeout, "the timeout survives the round trip")
		require.Equal(t, "TARGET", got.Types[0].Params[0].Name)
		requireTime(t, at(time.Minute), got.LastSeenAt, "last_seen_at")
		requireCode(t, s.AnnounceWorker(ctx, "nope", a, t0), scanfleet.ENOTFOUND)
	},
	"FindNotFound": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		_, err := s.FindWorker(ctx, "ghost")
		requireCode(t, err, scanfleet.ENOTFOUND, `worker "ghost" not found`)
		_, err = s.FindWorkerByHash(ctx, scanfleet.HashToken("sfw_nope"))
		requireCode(t, err, scanfleet.ENOTFOUND, "worker not found")
	},
}
