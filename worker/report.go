package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/scanfleet/scanfleet"
)

// maxReportBatch bounds the outcomes sent in one request.
const maxReportBatch = 256

// report is one outcome waiting to be sent, with where to say how it went.
type report struct {
	o        outcome
	deadline time.Time
	done     chan error
}

// reporter sends outcomes in batches: whatever is waiting when a request
// goes out rides in it, so a worker finishing hundreds of short tasks a
// second makes a few requests (one store transaction each), while a lone
// outcome is sent at once. It runs until stop is closed and the queue is
// empty.
func (w *Worker) reporter(stop <-chan struct{}, stopped chan<- struct{}) {
	defer close(stopped)
	for {
		var first report
		select {
		case first = <-w.reports:
		case <-stop:
			return
		}
		batch := []report{first}
	fill:
		for len(batch) < maxReportBatch {
			select {
			case r := <-w.reports:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		w.sendReports(batch)
	}
}

// sendReports delivers a batch, retrying transient failures until each
// outcome's deadline (its lease: past it the task is retried elsewhere).
func (w *Worker) sendReports(batch []report) {
	backoff := 100 * time.Millisecond
	for len(batch) > 0 {
		outs := make([]outcome, len(batch))
		for i, r := range batch {
			outs[i] = r.o
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Lease)
		results, err := w.cfg.Client.finishBatch(ctx, outs)
		cancel()
		if err == nil && len(results) != len(batch) {
			err = errors.New("finish: the server answered for a different number of tasks")
		}
		if err == nil {
			for i, r := range batch {
				r.done <- results[i].err()
			}
			return
		}
		code := scanfleet.ErrorCode(err)
		if code == scanfleet.ETOOLARGE {
			// Too big for one request: halves go on their own; a single
			// outcome goes without its last log lines.
			if len(batch) > 1 {
				w.sendReports(batch[:len(batch)/2])
				w.sendReports(batch[len(batch)/2:])
				return
			}
			if len(batch[0].o.Logs) > 0 {
				batch[0].o.Logs = []string{fmt.Sprintf("[scanfleet] %d last log lines dropped: too large to report", len(batch[0].o.Logs))}
				continue
			}
		}
		keep := batch[:0]
		for _, r := range batch {
			if code == scanfleet.EINVALID || code == scanfleet.EUNAUTHORIZED || code == scanfleet.ETOOLARGE || time.Now().After(r.deadline) {
				r.done <- err
			} else {
				keep = append(keep, r)
			}
		}
		batch = keep
		if len(batch) > 0 {
			w.log.Warn("report outcomes; retrying", slog.Int("tasks", len(batch)), slog.Any("err", err), slog.Duration("retry_in", backoff))
			time.Sleep(backoff)
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// report sends a task's outcome with the next batch and waits for the
// server's answer for it.
func (w *Worker) report(ctx context.Context, id string, o outcome) error {
	o.TaskID = id
	r := report{o: o, deadline: time.Now().Add(w.cfg.Lease), done: make(chan error, 1)}
	select {
	case w.reports <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-r.done
}

// finishResult is the server's answer for one outcome of a batch.
type finishResult struct {
	TaskID string                 `json:"task_id"`
	Status scanfleet.TaskStatus   `json:"status"`
	Error  *scanfleet.ErrorDetail `json:"error"`
}

func (r finishResult) err() error {
	if r.Error == nil {
		return nil
	}
	return r.Error.Err()
}
