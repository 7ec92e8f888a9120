package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/scanfleet/scanfleet"
)

// BenchRunStates measures what the scheduler asks of a scan's runs on
// every pass (RunStates, and ScanRunState before it launches or reports a
// run), for a scan whose history in one workspace is history ended tasks
// and in another ten, in the same store. It reports the microseconds each
// costs (short-us, long-us) and their ratio (long-over-short): near 1 when
// the answer does not read the history, and growing with history when it
// does.
func BenchRunStates(b *testing.B, s scanfleet.Store, history int) {
	ctx := context.Background()
	stamp := time.Now().UnixNano()
	short, long := fmt.Sprintf("short-%d", stamp), fmt.Sprintf("long-%d", stamp)
	for _, ws := range []string{short, long} {
		if err := s.CreateWorkspace(ctx, &scanfleet.Workspace{Name: ws}); err != nil {
			b.Fatal(err)
		}
	}
	sc := newScan(fmt.Sprintf("history-%d", stamp), short, long)
	if err := s.CreateScan(ctx, sc); err != nil {
		b.Fatal(err)
	}
	ended := func(ws string, n int) {
		tasks := make([]*scanfleet.Task, n)
		for i := range tasks {
			end := t0.Add(time.Duration(i) * time.Minute)
			status := scanfleet.TaskFinished
			if i%10 == 9 {
				status = scanfleet.TaskFailed
			}
			tasks[i] = newTask(ws, status, end.Add(-time.Second))
			tasks[i].ScanID = sc.ID
			if status == scanfleet.TaskFinished {
				tasks[i].FinishedAt = &end
			} else {
				tasks[i].FailedAt = &end
			}
		}
		for part := range slices.Chunk(tasks, 500) {
			if err := s.CreateTasks(ctx, part); err != nil {
				b.Fatal(err)
			}
		}
	}
	ended(short, 10)
	ended(long, history)
	last := map[string]time.Time{short: t0.Add(9 * time.Minute), long: t0.Add(time.Duration(history-1) * time.Minute)}
	var took [2]time.Duration
	b.ResetTimer()
	for range b.N {
		for i, ws := range []string{short, long} {
			start := time.Now()
			k := scanfleet.RunKey{ScanID: sc.ID, Workspace: ws}
			states, err := s.RunStates(ctx, []scanfleet.RunKey{k})
			if err != nil {
				b.Fatal(err)
			}
			inFlight, end, err := s.ScanRunState(ctx, sc.ID, ws)
			if err != nil {
				b.Fatal(err)
			}
			took[i] += time.Since(start)
			if st := states[k]; st.InFlight || inFlight != nil || st.LastEnd == nil || end == nil ||
				!st.LastEnd.Equal(last[ws]) || !end.Equal(last[ws]) {
				b.Fatalf("%s: run state %+v, in flight %v, last end %v; want none in flight, last end %s", ws, st, inFlight, end, last[ws])
			}
		}
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(us(took[0]), "short-us")
	b.ReportMetric(us(took[1]), "long-us")
	b.ReportMetric(float64(took[1])/float64(took[0]), "long-over-short")
	b.ReportMetric(0, "ns/op")
}
