package html

import (
	"net/http"
	"sort"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/launcher"
)

type workerRow struct {
	*scanfleet.Worker
	Tasks []*scanfleet.Task
}

type workersData struct {
	Workers     []workerRow
	Launches    []launcher.Attempt
	MoreRunning bool
}

func (u *UI) handleWorkers(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	workers, err := u.b.ListWorkers(ctx)
	if err != nil {
		return err
	}
	// One read for every worker's current tasks, not one per worker.
	running, next, err := u.b.ListTasks(ctx, scanfleet.TaskFilter{Status: []scanfleet.TaskStatus{scanfleet.TaskStarted}, Page: scanfleet.Page{Limit: scanfleet.MaxPageLimit}})
	if err != nil {
		return err
	}
	byWorker := map[string][]*scanfleet.Task{}
	for _, t := range running {
		byWorker[t.WorkerID] = append(byWorker[t.WorkerID], t)
	}
	d := workersData{MoreRunning: next != ""}
	for _, wk := range workers {
		d.Workers = append(d.Workers, workerRow{Worker: wk, Tasks: byWorker[wk.ID]})
	}
	if d.Launches, err = u.b.LaunchAttempts(ctx); err != nil {
		return err
	}
	sort.SliceStable(d.Launches, func(i, j int) bool { return d.Launches[i].Time.After(d.Launches[j].Time) })
	u.render(w, r, http.StatusOK, "workers", s, "Workers", d)
	return nil
}
