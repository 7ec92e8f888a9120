package html

import (
	"net/http"
	"sort"
	"time"

	"github.com/scanfleet/scanfleet"
)

type statusCount struct {
	Status scanfleet.TaskStatus
	Count  int64
}

type poolCount struct {
	Pool          scanfleet.Pool
	Online, Total int
}

type dashboardData struct {
	Tasks    []statusCount
	Pools    []poolCount
	Failures []*scanfleet.Task
	Records  []*scanfleet.Record
}

// newestWindow is how far back the dashboard looks for new records.
const newestWindow = 24 * time.Hour

func (u *UI) handleDashboard(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	var d dashboardData
	counts, err := u.b.CountTasksByStatus(ctx)
	if err != nil {
		return err
	}
	for _, st := range scanfleet.TaskStatuses {
		d.Tasks = append(d.Tasks, statusCount{st, counts[st]})
	}
	workers, err := u.b.ListWorkers(ctx)
	if err != nil {
		return err
	}
	pools := map[scanfleet.Pool]*poolCount{}
	for _, p := range []scanfleet.Pool{scanfleet.PoolExternal, scanfleet.PoolInternal, scanfleet.PoolBaremetal} {
		pools[p] = &poolCount{Pool: p}
	}
	for _, wk := range workers {
		pc, ok := pools[wk.Pool]
		if !ok {
			pc = &poolCount{Pool: wk.Pool}
			pools[wk.Pool] = pc
		}
		pc.Total++
		if wk.State != scanfleet.WorkerOffline {
			pc.Online++
		}
	}
	for _, pc := range pools {
		d.Pools = append(d.Pools, *pc)
	}
	sort.Slice(d.Pools, func(i, j int) bool { return d.Pools[i].Pool < d.Pools[j].Pool })
	if d.Failures, _, err = u.b.ListTasks(ctx, scanfleet.TaskFilter{Status: []scanfleet.TaskStatus{scanfleet.TaskFailed}, Page: scanfleet.Page{Limit: 10}}); err != nil {
		return err
	}
	// The store lists records first seen first; the newest are the last
	// of those seen lately.
	recent, _, err := u.b.ListRecords(ctx, scanfleet.RecordFilter{SeenSince: u.cfg.Now().Add(-newestWindow), Page: scanfleet.Page{Limit: scanfleet.MaxPageLimit}})
	if err != nil {
		return err
	}
	sort.SliceStable(recent, func(i, j int) bool { return recent[i].FirstSeen.After(recent[j].FirstSeen) })
	d.Records = recent[:min(len(recent), 10)]
	u.render(w, r, http.StatusOK, "dashboard", s, "Dashboard", d)
	return nil
}
