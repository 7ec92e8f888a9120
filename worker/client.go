package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Client calls the server's worker API with a worker credential.
type Client struct {
	Base       string
	Credential string
	HTTP       *http.Client
}

// NewClient returns a client for the server at base.
func NewClient(base, credential string) *Client {
	return &Client{
		Base: strings.TrimRight(base, "/"), Credential: credential,
		HTTP: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
		}},
	}
}

// Enrol redeems a join token and returns the worker's id and credential.
func Enrol(ctx context.Context, base string, req EnrolRequest) (*EnrolResponse, error) {
	c := NewClient(base, "")
	var resp EnrolResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/workers/enrol", "application/json", req, &resp); err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	return &resp, nil
}

// EnrolRequest is what a worker sends to enrol.
type EnrolRequest = scanfleet.EnrolRequest

// EnrolResponse is the server's answer to an enrolment.
type EnrolResponse = scanfleet.EnrolResponse

// Command is an instruction from the server.
type Command = scanfleet.Command

type pollResponse struct {
	Tasks    []*scanfleet.Task `json:"tasks"`
	Commands []Command         `json:"commands"`
}

func (c *Client) poll(ctx context.Context, max int, wait time.Duration, hb scanfleet.Heartbeat) (*pollResponse, error) {
	var resp pollResponse
	req := map[string]any{"max": max, "wait": wait.String(), "running": hb.Running, "draining": hb.Draining, "session": hb.Session}
	err := c.do(ctx, http.MethodPost, "/api/v1/worker/poll", "application/json", req, &resp)
	return &resp, err
}

func (c *Client) heartbeat(ctx context.Context, hb scanfleet.Heartbeat) ([]Command, error) {
	var resp pollResponse
	err := c.do(ctx, http.MethodPost, "/api/v1/worker/heartbeat", "application/json", hb, &resp)
	return resp.Commands, err
}

func (c *Client) claim(ctx context.Context, id string) (*scanfleet.Task, error) {
	var t scanfleet.Task
	err := c.do(ctx, http.MethodPost, "/api/v1/worker/tasks/"+id+"/claim", "application/json", struct{}{}, &t)
	return &t, err
}

func (c *Client) claimBatch(ctx context.Context, ids []string) ([]*scanfleet.Task, error) {
	var resp struct {
		Tasks []*scanfleet.Task `json:"tasks"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/worker/claim", "application/json", map[string]any{"ids": ids}, &resp)
	return resp.Tasks, err
}

func (c *Client) renew(ctx context.Context, id string, attempt int, p scanfleet.Progress) (bool, error) {
	var resp struct {
		CancelRequested bool `json:"cancel_requested"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/worker/tasks/"+id+"/renew", "application/json", map[string]any{"progress": p, "attempt": attempt}, &resp)
	return resp.CancelRequested, err
}

func (c *Client) logs(ctx context.Context, id string, attempt int, lines []string) error {
	return c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/worker/tasks/%s/logs?attempt=%d", id, attempt), "application/json", map[string]any{"lines": lines}, nil)
}

func (c *Client) records(ctx context.Context, id string, attempt int, jsonl []byte) error {
	return c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/worker/tasks/%s/records?attempt=%d", id, attempt), "application/x-ndjson", rawJSONL(jsonl), nil)
}

// artifact streams a file the task produced to the server.
func (c *Client) artifact(ctx context.Context, id string, attempt int, name, ctype string, r io.Reader) error {
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	path := fmt.Sprintf("/api/v1/worker/tasks/%s/artifacts/%s?attempt=%d", id, url.PathEscape(name), attempt)
	return c.do(ctx, http.MethodPut, path, ctype, bodyReader{r}, nil)
}

// bodyReader is a request body streamed as it is, not JSON-encoded.
type bodyReader struct{ io.Reader }

// outcome is what a worker reports at the end of a task.
type outcome struct {
	TaskID   string               `json:"task_id,omitempty"`
	Status   scanfleet.TaskStatus `json:"status"`
	Output   any                  `json:"output,omitempty"`
	Error    string               `json:"error,omitempty"`
	Logs     []string             `json:"logs,omitempty"`
	Progress *scanfleet.Progress  `json:"progress,omitempty"`
	Attempt  int                  `json:"attempt,omitempty"`
}

// finishBatch reports several outcomes in one request.
func (c *Client) finishBatch(ctx context.Context, outs []outcome) ([]finishResult, error) {
	var resp struct {
		Results []finishResult `json:"results"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/worker/finish", "application/json", map[string]any{"outcomes": outs}, &resp)
	return resp.Results, err
}

func (c *Client) finish(ctx context.Context, id string, o outcome) error {
	return c.do(ctx, http.MethodPost, "/api/v1/worker/tasks/"+id+"/finish", "application/json", o, nil)
}

type rawJSONL []byte

// do sends one request; an error answer becomes a *scanfleet.Error.
func (c *Client) do(ctx context.Context, method, path, ctype string, in, out any) error {
	var body io.Reader
	if raw, ok := in.(rawJSONL); ok {
		body = bytes.NewReader(raw)
	} else if r, ok := in.(bodyReader); ok {
		body = r.Reader
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	if c.Credential != "" {
		req.Header.Set("Authorization", "Bearer "+c.Credential)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var eb scanfleet.ErrorBody
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return eb.Error.Err()
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return err
	}
	// Read to the end, so that the connection is reused and the server
	// does not see it closed as if the answer had not arrived.
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// Announce tells the server what this worker has now: version,
// capabilities, executors and the task types of its external executors.
func (c *Client) Announce(ctx context.Context, a scanfleet.Announcement) error {
	return c.do(ctx, http.MethodPost, "/api/v1/worker/announce", "application/json", a, nil)
}

// Claim starts a dispatched task on this worker.
func (c *Client) Claim(ctx context.Context, id string) (*scanfleet.Task, error) {
	return c.claim(ctx, id)
}

// Renew renews the lease of a held task; it reports whether the task's
// cancel was requested.
func (c *Client) Renew(ctx context.Context, id string) (bool, error) {
	return c.renew(ctx, id, 0, scanfleet.Progress{})
}

// Finish reports a held task's outcome.
func (c *Client) Finish(ctx context.Context, id string, st scanfleet.TaskStatus) error {
	return c.finish(ctx, id, outcome{Status: st})
}

// cloud fetches the cloud environment of a held task's workspace.
func (c *Client) cloud(ctx context.Context, taskID string) ([]byte, error) {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/api/v1/worker/tasks/"+taskID+"/cloud", "application/json", nil, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// taskData reads task data through the worker API, for a worker that has
// no store of its own: only what its held task may see.
type taskData struct {
	c    *Client
	task *scanfleet.Task
}

// GetCloud implements scanfleet.TaskData.
func (d taskData) GetCloud(ctx context.Context, workspace string) (*scanfleet.CloudEnv, error) {
	if workspace != d.task.Workspace {
		return nil, scanfleet.Errorf(scanfleet.EFORBIDDEN, "task %s may read workspace %q only", d.task.ID, d.task.Workspace)
	}
	data, err := d.c.cloud(ctx, d.task.ID)
	if err != nil {
		return nil, err
	}
	return &scanfleet.CloudEnv{Workspace: workspace, Data: data}, nil
}
