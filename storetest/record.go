package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// record builds a record through scanfleet.NewRecord, as ingest does.
func record(t testing.TB, fields map[string]any) scanfleet.Record {
	t.Helper()
	r, err := scanfleet.NewRecord(fields)
	require.NoError(t, err)
	return r
}

func hostRecord(t testing.TB, ip string) scanfleet.Record {
	return record(t, map[string]any{"kind": "host", "ip": ip, "os": "Linux"})
}

func serviceRecord(t testing.TB, ip string, port int) scanfleet.Record {
	return record(t, map[string]any{"kind": "service", "ip": ip, "port": port, "proto": "tcp", "name": "ssh"})
}

// listRecords follows the cursor through every page of f.
func listRecords(t *testing.T, s scanfleet.Store, f scanfleet.RecordFilter) []*scanfleet.Record {
	t.Helper()
	var out []*scanfleet.Record
	for calls := 0; ; calls++ {
		require.Less(t, calls, 100, "too many pages")
		page, next, err := s.ListRecords(t.Context(), f)
		require.NoError(t, err)
		out = append(out, page...)
		if next == "" {
			return out
		}
		f.Page.Cursor = next
	}
}

// byKey indexes records by kind and key.
func byKey(recs []*scanfleet.Record) map[string]*scanfleet.Record {
	m := make(map[string]*scanfleet.Record, len(recs))
	for _, r := range recs {
		m[string(r.Kind)+" "+r.Key] = r
	}
	return m
}

func recordKeys(recs []*scanfleet.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Key
	}
	return out
}

var recordTests = map[string]func(*testing.T, scanfleet.Store){
	"UpsertNewThenSame": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		recs := []scanfleet.Record{
			hostRecord(t, "10.0.0.1"),
			serviceRecord(t, "10.0.0.1", 22),
			record(t, map[string]any{"kind": "domain", "name": "WWW.Example.com.", "ips": []any{"10.0.0.1"}}),
		}
		res, err := s.UpsertRecords(ctx, "a", "task-1", recs, t0)
		require.NoError(t, err)
		require.Equal(t, scanfleet.IngestResult{Accepted: 3, New: 3}, res)
		first := listRecords(t, s, scanfleet.RecordFilter{Workspace: "a"})
		require.Len(t, first, 3)
		for _, r := range first {
			require.NotEmpty(t, r.ID)
			require.Equal(t, "a", r.Workspace)
			requireTime(t, t0, r.FirstSeen, "first_seen")
			requireTime(t, t0, r.LastSeen, "last_seen")
			require.Equal(t, "task-1", r.FirstTask)
			require.Equal(t, "task-1", r.LastTask)
		}
		got := byKey(first)
		for _, want := range recs {
			r := got[string(want.Kind)+" "+want.Key]
			require.NotNil(t, r, "%s %s", want.Kind, want.Key)
			requireJSONEqual(t, want.Data, r.Data, "data")
		}
		require.Contains(t, got, "domain www.example.com")

		// The same records again: only last_seen and last_task move.
		res, err = s.UpsertRecords(ctx, "a", "task-2", recs, at(time.Hour))
		require.NoError(t, err)
		require.Equal(t, scanfleet.IngestResult{Accepted: 3, Unchanged: 3}, res)
		// And again without a task: last_task stays.
		res, err = s.UpsertRecords(ctx, "a", "", recs, at(2*time.Hour))
		require.NoError(t, err)
		require.Equal(t, scanfleet.IngestResult{Accepted: 3, Unchanged: 3}, res)
		second := listRecords(t, s, scanfleet.RecordFilter{Workspace: "a"})
		require.Len(t, second, 3)
		for i, r := range second {
			before := first[i]
			require.Equal(t, before.ID, r.ID)
			require.Equal(t, before.Key, r.Key)
			requireJSONEqual(t, before.Data, r.Data, "data")
			requireTime(t, t0, r.FirstSeen, "first_seen")
			require.Equal(t, "task-1", r.FirstTask)
			requireTime(t, at(2*time.Hour), r.LastSeen, "last_seen")
			require.Equal(t, "task-2", r.LastTask)
		}
	},
	"UpsertMergesChanges": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		_, err := s.UpsertRecords(ctx, "a", "t1", []scanfleet.Record{serviceRecord(t, "10.0.0.1", 22), hostRecord(t, "10.0.0.1")}, t0)
		require.NoError(t, err)
		changed := record(t, map[string]any{"kind": "service", "ip": "10.0.0.1", "port": 22, "banner": "SSH-2.0-OpenSSH_9.6", "state": "filtered"})
		res, err := s.UpsertRecords(ctx, "a", "t2", []scanfleet.Record{changed, hostRecord(t, "10.0.0.1")}, at(time.Minute))
		require.NoError(t, err)
		require.Equal(t, scanfleet.IngestResult{Accepted: 2, Changed: 1, Unchanged: 1}, res)
		recs := listRecords(t, s, scanfleet.RecordFilter{Workspace: "a", Kind: scanfleet.KindService})
		require.Len(t, recs, 1)
		requireJSONEqual(t, map[string]any{
			"kind": "service", "ip": "10.0.0.1", "port": 22, "proto": "tcp",
			"name":   "ssh",                 // kept from the first sighting
			"banner": "SSH-2.0-OpenSSH_9.6", // added
			"state":  "filtered",            // replaced
		}, recs[0].Data, "merged data")
		requireTime(t, t0, recs[0].FirstSeen, "first_seen")
		requireTime(t, at(time.Minute), recs[0].LastSeen, "last_seen")
		require.Equal(t, "t1", recs[0].FirstTask)
		require.Equal(t, "t2", recs[0].LastTask)
	},
	"UpsertDedupesWithinRequest": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		a := record(t, map[string]any{"kind": "host", "ip": "10.0.0.9", "os": "Linux", "hostnames": []any{"a.example.com"}})
		b := record(t, map[string]any{"kind": "host", "ip": "10.0.0.9", "os": "OpenBSD", "mac": "00:11:22:33:44:55"})
		res, err := s.UpsertRecords(ctx, "a", "", []scanfleet.Record{a, b, hostRecord(t, "10.0.0.8")}, t0)
		require.NoError(t, err)
		require.Equal(t, scanfleet.IngestResult{Accepted: 3, New: 2}, res)
		recs := listRecords(t, s, scanfleet.RecordFilter{Workspace: "a", Key: "10.0.0.9"})
		require.Len(t, recs, 1)
		requireJSONEqual(t, map[string]any{
			"kind": "host", "ip": "10.0.0.9", "os": "OpenBSD", "hostnames": []any{"a.example.com"}, "mac": "00:11:22:33:44:55",
		}, recs[0].Data, "the later record's fields win")
		require.Empty(t, recs[0].FirstTask)
	},
	"UpsertManyBatches": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		var recs []scanfleet.Record
		for i := range 1201 {
			recs = append(recs, serviceRecord(t, fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), 22+i%3))
		}
		res, err := s.UpsertRecords(ctx, "a", "t1", recs, t0)
		require.NoError(t, err)
		require.Equal(t, scanfleet.IngestResult{Accepted: 1201, New: 1201}, res)
		recs[1000] = record(t, map[string]any{"kind": "service", "ip": recs[1000].Data["ip"], "port": recs[1000].Data["port"], "name": "http"})
		res, err = s.UpsertRecords(ctx, "a", "t2", recs, at(time.Hour))
		require.NoError(t, err)
		require.Equal(t, scanfleet.IngestResult{Accepted: 1201, Changed: 1, Unchanged: 1200}, res)
		counts, err := s.CountRecords(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, int64(1201), counts[scanfleet.KindService])

		page, next, err := s.ListRecords(ctx, scanfleet.RecordFilter{Workspace: "a", Page: scanfleet.Page{Limit: scanfleet.MaxPageLimit}})
		require.NoError(t, err)
		require.Len(t, page, scanfleet.MaxPageLimit)
		require.NotEmpty(t, next)
		rest, next, err := s.ListRecords(ctx, scanfleet.RecordFilter{Workspace: "a", Page: scanfleet.Page{Limit: scanfleet.MaxPageLimit, Cursor: next}})
		require.NoError(t, err)
		require.Len(t, rest, 201)
		require.Empty(t, next)
		seen := map[string]bool{}
		for _, r := range append(page, rest...) {
			require.False(t, seen[r.ID], "duplicate %s", r.ID)
			seen[r.ID] = true
			requireTime(t, at(time.Hour), r.LastSeen, "last_seen")
		}
	},
	"UpsertAtomic": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		var recs []scanfleet.Record
		for i := range 700 {
			recs = append(recs, hostRecord(t, fmt.Sprintf("10.2.%d.%d", i/200, i%200+1)))
		}
		// A value JSON cannot hold, in the second batch: the first batch
		// must not stay written.
		recs[650].Data["load"] = math.Inf(1)
		_, err := s.UpsertRecords(ctx, "a", "t1", recs, t0)
		requireCode(t, err, scanfleet.EINVALID)
		counts, err := s.CountRecords(ctx, "a")
		require.NoError(t, err)
		require.Zero(t, counts[scanfleet.KindHost], "nothing written")

		// Cancelled at any point, an ingest leaves all or nothing.
		delete(recs[650].Data, "load")
		for round, delay := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
			ws := fmt.Sprintf("cancel-%d", round)
			createWorkspace(t, s, ws)
			cctx, cancel := context.WithTimeout(ctx, delay)
			_, err := s.UpsertRecords(cctx, ws, "t1", recs, t0)
			cancel()
			counts, cerr := s.CountRecords(ctx, ws)
			require.NoError(t, cerr)
			if err != nil {
				require.Zero(t, counts[scanfleet.KindHost], "delay %s: a failed ingest wrote records", delay)
			} else {
				require.Equal(t, int64(len(recs)), counts[scanfleet.KindHost])
			}
		}
	},
	"UpsertUnknownWorkspace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		_, err := s.UpsertRecords(ctx, "ghost", "t1", []scanfleet.Record{hostRecord(t, "10.0.0.1")}, t0)
		requireCode(t, err, scanfleet.ENOTFOUND, `workspace "ghost" not found`)
		counts, err := s.CountRecords(ctx, "")
		require.NoError(t, err)
		for _, k := range scanfleet.RecordKinds {
			require.Zero(t, counts[k], "nothing written")
		}
		_, err = s.UpsertRecords(ctx, "a", "", []scanfleet.Record{{Kind: scanfleet.KindHost}}, t0)
		requireCode(t, err, scanfleet.EINVALID)
	},
	"NumbersStayExact": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		r := hostRecord(t, "10.0.0.1")
		r.Data["asn_big"] = json.Number("123456789012345678901234567890")
		r.Data["uptime"] = json.Number("9007199254740993")
		r.Data["ratio"] = 0.25
		r.Data["html"] = "<b>&</b>"
		_, err := s.UpsertRecords(ctx, "a", "", []scanfleet.Record{r}, t0)
		require.NoError(t, err)
		recs := listRecords(t, s, scanfleet.RecordFilter{Workspace: "a"})
		require.Len(t, recs, 1)
		require.Equal(t, json.Number("123456789012345678901234567890"), recs[0].Data["asn_big"])
		require.Equal(t, json.Number("9007199254740993"), recs[0].Data["uptime"])
		require.Equal(t, json.Number("0.25"), recs[0].Data["ratio"])
		require.Equal(t, "<b>&</b>", recs[0].Data["html"])
		// Read back and ingested again, the record is unchanged.
		again := scanfleet.Record{Kind: recs[0].Kind, Key: recs[0].Key, Data: recs[0].Data}
		res, err := s.UpsertRecords(ctx, "a", "", []scanfleet.Record{again}, t0)
		require.NoError(t, err)
		require.Equal(t, 1, res.Unchanged)
	},
	"ListFilters": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		createWorkspace(t, s, "b")
		raw := func(kind scanfleet.RecordKind, key string) scanfleet.Record {
			return scanfleet.Record{Kind: kind, Key: key, Data: map[string]any{"kind": string(kind), "name": key}}
		}
		_, err := s.UpsertRecords(ctx, "a", "t1", []scanfleet.Record{
			raw(scanfleet.KindDomain, "_dmarc.example.com"),
			raw(scanfleet.KindDomain, "xdmarc.example.com"),
			raw(scanfleet.KindDomain, "100%.example.com"),
			raw(scanfleet.KindDomain, "Mail.Example.com"),
			raw(scanfleet.KindHost, "10.0.0.1"),
		}, t0)
		require.NoError(t, err)
		_, err = s.UpsertRecords(ctx, "a", "t2", []scanfleet.Record{
			raw(scanfleet.KindHost, "10.0.0.2"),
			raw(scanfleet.KindDomain, "xdmarc.example.com"),
		}, at(time.Hour))
		require.NoError(t, err)
		_, err = s.UpsertRecords(ctx, "b", "t3", []scanfleet.Record{raw(scanfleet.KindHost, "10.0.0.1")}, t0)
		require.NoError(t, err)

		for _, tc := range []struct {
			name   string
			filter scanfleet.RecordFilter
			want   []string
		}{
			{"workspace", scanfleet.RecordFilter{Workspace: "b"}, []string{"10.0.0.1"}},
			{"kind", scanfleet.RecordFilter{Workspace: "a", Kind: scanfleet.KindHost}, []string{"10.0.0.1", "10.0.0.2"}},
			{"key", scanfleet.RecordFilter{Workspace: "a", Key: "10.0.0.2"}, []string{"10.0.0.2"}},
			{"key is exact", scanfleet.RecordFilter{Workspace: "a", Key: "10.0.0"}, nil},
			{"search", scanfleet.RecordFilter{Workspace: "a", Search: "dmarc"}, []string{"_dmarc.example.com", "xdmarc.example.com"}},
			{"search underscore is literal", scanfleet.RecordFilter{Workspace: "a", Search: "_dmarc"}, []string{"_dmarc.example.com"}},
			{"search percent is literal", scanfleet.RecordFilter{Workspace: "a", Search: "0%."}, []string{"100%.example.com"}},
			{"search ignores case", scanfleet.RecordFilter{Workspace: "a", Search: "MAIL.example"}, []string{"Mail.Example.com"}},
			{"task", scanfleet.RecordFilter{Workspace: "a", Task: "t2"}, []string{"xdmarc.example.com", "10.0.0.2"}},
			{"seen since", scanfleet.RecordFilter{Workspace: "a", SeenSince: at(time.Minute)}, []string{"xdmarc.example.com", "10.0.0.2"}},
			{"combined", scanfleet.RecordFilter{Workspace: "a", Kind: scanfleet.KindDomain, Task: "t2", Search: "example"}, []string{"xdmarc.example.com"}},
			{"every workspace", scanfleet.RecordFilter{Key: "10.0.0.1"}, []string{"10.0.0.1", "10.0.0.1"}},
		} {
			for _, limit := range []int{0, 1} {
				f := tc.filter
				f.Page.Limit = limit
				got := listRecords(t, s, f)
				require.ElementsMatch(t, tc.want, recordKeys(got), "%s, limit %d", tc.name, limit)
				for i := 1; i < len(got); i++ {
					require.Less(t, got[i-1].ID, got[i].ID, "%s: in id order", tc.name)
				}
			}
		}

		_, _, err = s.ListRecords(ctx, scanfleet.RecordFilter{Workspace: "ghost"})
		requireCode(t, err, scanfleet.ENOTFOUND, `workspace "ghost" not found`)
		_, _, err = s.ListRecords(ctx, scanfleet.RecordFilter{Workspace: "a", Page: scanfleet.Page{Cursor: "!!"}})
		requireCode(t, err, scanfleet.EINVALID)
	},
	"Count": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		createWorkspace(t, s, "b")
		_, err := s.UpsertRecords(ctx, "a", "", []scanfleet.Record{
			hostRecord(t, "10.0.0.1"), hostRecord(t, "10.0.0.2"), serviceRecord(t, "10.0.0.1", 22),
		}, t0)
		require.NoError(t, err)
		_, err = s.UpsertRecords(ctx, "b", "", []scanfleet.Record{hostRecord(t, "10.0.0.1")}, t0)
		require.NoError(t, err)
		counts, err := s.CountRecords(ctx, "a")
		require.NoError(t, err)
		want := map[scanfleet.RecordKind]int64{}
		for _, k := range scanfleet.RecordKinds {
			want[k] = 0
		}
		want[scanfleet.KindHost], want[scanfleet.KindService] = 2, 1
		require.Equal(t, want, counts)
		counts, err = s.CountRecords(ctx, "")
		require.NoError(t, err)
		require.Equal(t, int64(3), counts[scanfleet.KindHost])
		_, err = s.CountRecords(ctx, "ghost")
		requireCode(t, err, scanfleet.ENOTFOUND, `workspace "ghost" not found`)
	},
}
