package scheduler

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/scanfleet/scanfleet"
)

// eventsMark names the store mark of how far event detection got.
const eventsMark = "webhook-events"

// maxEventBatch is the size of one page of ended tasks.
const maxEventBatch = 500

// detectEvents turns tasks that ended since the last pass into webhook
// events: task.failed for each failed task, scan.finished for each scan
// run that has nothing left in flight in a workspace. They are stored as
// pending deliveries (an outbox), with ids made from what they are about,
// so that a pass seen twice sends nothing twice.
func (s *Scheduler) detectEvents(ctx context.Context, now time.Time) error {
	mark, err := s.store.GetMark(ctx, eventsMark)
	if err != nil {
		return err
	}
	if mark.IsZero() {
		// First start: from now on, not the whole history.
		return s.store.SetMark(ctx, eventsMark, now)
	}
	// Look again a little before the mark: a transaction that took its
	// time before another's committed first may land behind it. Delivery
	// ids are made from what they are about, so what is seen twice is
	// stored once.
	since, afterID := mark.Add(-eventOverlap), ""
	var ds []*scanfleet.Delivery
	type run struct{ scan, workspace string }
	ended := map[run]*scanfleet.Task{} // the last task of the run seen ending
	for range maxEventPages {
		tasks, err := s.store.TasksEndedSince(ctx, since, afterID, maxEventBatch)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if t.Status == scanfleet.TaskFailed {
				ds = append(ds, delivery("task.failed:"+t.ID, t.Workspace, scanfleet.EventTaskFailed, now, map[string]any{
					"task": map[string]any{"id": t.ID, "scan_id": t.ScanID, "type": t.Type, "workspace": t.Workspace,
						"error": t.Error, "attempts": t.Attempts, "failed_at": t.FailedAt},
				}))
			}
			if t.ScanID != "" {
				ended[run{t.ScanID, t.Workspace}] = t
			}
			since, afterID = t.UpdatedAt, t.ID
			if t.UpdatedAt.After(mark) {
				mark = t.UpdatedAt
			}
		}
		if len(tasks) < maxEventBatch {
			break
		}
	}
	for r, last := range ended {
		inFlight, _, err := s.store.ScanRunState(ctx, r.scan, r.workspace)
		if err != nil {
			return err
		}
		if inFlight != nil {
			continue // the run goes on; its last task will tell
		}
		// One event per run: a run is known by when it was launched.
		name, runID := "", "task:"+last.ID
		if sc, err := s.store.FindScan(ctx, r.scan); err == nil {
			name = sc.Name
			if sc.LastRunAt != nil {
				runID = sc.LastRunAt.UTC().Format(time.RFC3339Nano)
			}
		}
		ds = append(ds, delivery("scan.finished:"+r.scan+":"+r.workspace+":"+runID, r.workspace, scanfleet.EventScanFinished, now, map[string]any{
			"scan": map[string]any{"id": r.scan, "name": name, "workspace": r.workspace, "last_task": last.ID, "last_status": last.Status},
		}))
	}
	if err := s.store.EnqueueDeliveries(ctx, ds); err != nil {
		return err
	}
	return s.store.SetMark(ctx, eventsMark, mark)
}

// eventOverlap is how far before its mark event detection looks again.
const eventOverlap = 2 * time.Second

// maxEventPages bounds the pages of ended tasks one tick reads.
const maxEventPages = 20

func delivery(id, workspace, event string, now time.Time, body map[string]any) *scanfleet.Delivery {
	body["event"], body["id"], body["time"] = event, id, now.UTC()
	b, _ := json.Marshal(body)
	sum := sha256.Sum256([]byte(id))
	return &scanfleet.Delivery{ID: hex.EncodeToString(sum[:16]), Workspace: workspace, Event: event, Payload: b, CreatedAt: now}
}

// maxDeliveriesPerTick bounds the deliveries one tick sends.
const maxDeliveriesPerTick = 50

// deliver sends due deliveries: a JSON POST signed with the webhook's
// secret. A 2xx answer delivers it; anything else is retried with growing
// delays until MaxDeliveryAttempts, then it is marked failed. Every
// attempt is in the delivery log.
func (s *Scheduler) deliver(ctx context.Context, now time.Time) error {
	due, err := s.store.DueDeliveries(ctx, now, maxDeliveriesPerTick)
	if err != nil {
		return err
	}
	hooks := map[string]*scanfleet.Webhook{}
	budget := time.Now().Add(s.cfg.Interval) // a slow endpoint must not hold the tick (and the lease) up
	for _, d := range due {
		if time.Now().After(budget) {
			break // the rest stay due for the next tick
		}
		h, seen := hooks[d.Workspace]
		if !seen {
			h, err = s.store.GetWebhook(ctx, d.Workspace)
			if err != nil && scanfleet.ErrorCode(err) != scanfleet.ENOTFOUND {
				return err
			}
			hooks[d.Workspace] = h
		}
		d.Attempts++
		d.UpdatedAt = s.cfg.Now()
		if h == nil {
			d.Status, d.LastError = scanfleet.DeliveryFailed, "the workspace's webhook was removed"
		} else if code, err := s.post(ctx, h, d); err == nil {
			d.Status, d.LastCode, d.LastError = scanfleet.DeliveryDelivered, code, ""
		} else {
			d.LastCode, d.LastError = code, err.Error()
			if d.Attempts >= scanfleet.MaxDeliveryAttempts {
				d.Status = scanfleet.DeliveryFailed
			} else {
				d.NextAt = now.Add(jitter(min(time.Duration(1<<d.Attempts)*5*time.Second, time.Hour)))
			}
			s.log.Warn("webhook delivery", slog.String("workspace", d.Workspace), slog.String("event", d.Event),
				slog.Int("attempt", d.Attempts), slog.Any("err", err))
		}
		if err := s.store.UpdateDelivery(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// post sends one delivery and returns the answer's status code.
func (s *Scheduler) post(ctx context.Context, h *scanfleet.Webhook, d *scanfleet.Delivery) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "scanfleet-webhook")
	req.Header.Set("X-Scanfleet-Event", d.Event)
	req.Header.Set("X-Scanfleet-Delivery", d.ID)
	if h.Secret != "" {
		mac := hmac.New(sha256.New, []byte(h.Secret))
		mac.Write(d.Payload)
		req.Header.Set("X-Scanfleet-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}
