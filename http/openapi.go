package http

import (
	"net/http"
	"strings"
	"sync"
)

// operation describes one route for the OpenAPI document.
type operation struct {
	method, path, summary string
	role                  string // "" for no auth
	params                []string
	body                  string // request schema name, "" for none; "jsonl" for record ingest
	status                int
	response              string // response schema name
}

// operations lists every route the server has. TestOpenAPICoversRoutes walks
// the router and fails when a route is missing here or listed but not served.
var operations = []operation{
	{method: "GET", path: "/api/v1/health", summary: "Liveness and store health; needs no token.", status: 200, response: "Health"},
	{method: "GET", path: "/metrics", summary: "Prometheus metrics.", role: "viewer", status: 200, response: "text"},
	{method: "GET", path: "/api/v1/openapi.json", summary: "This document.", role: "viewer", status: 200, response: "object"},
	{method: "GET", path: "/api/v1/task-types", summary: "Task types with their params schema, requirements and pool.", role: "viewer", status: 200, response: "TaskTypeList"},

	{method: "GET", path: "/api/v1/workspaces", summary: "List workspaces by name.", role: "viewer", params: []string{"cursor", "limit"}, status: 200, response: "WorkspaceList"},
	{method: "POST", path: "/api/v1/workspaces", summary: "Create a workspace with its scope.", role: "operator", body: "WorkspaceCreate", status: 201, response: "Workspace"},
	{method: "GET", path: "/api/v1/workspaces/{ws}", summary: "Get a workspace with its record counts.", role: "viewer", status: 200, response: "Workspace"},
	{method: "PATCH", path: "/api/v1/workspaces/{ws}", summary: "Change a workspace's description or scope.", role: "operator", body: "WorkspaceUpdate", status: 200, response: "Workspace"},
	{method: "DELETE", path: "/api/v1/workspaces/{ws}", summary: "Delete a workspace with its records and tasks.", role: "operator", status: 204},
	{method: "GET", path: "/api/v1/workspaces/{ws}/records", summary: "List records; ?format=jsonl exports all of them as JSON Lines.", role: "viewer", params: []string{"kind", "key", "q", "task", "seen_since", "format", "cursor", "limit"}, status: 200, response: "RecordList"},
	{method: "POST", path: "/api/v1/workspaces/{ws}/records", summary: "Ingest JSON Lines of records or Faraday bulk_create documents (application/x-ndjson), or one document (application/json). All or nothing.", role: "operator", params: []string{"task"}, body: "jsonl", status: 200, response: "IngestResult"},
	{method: "GET", path: "/api/v1/workspaces/{ws}/scope/check", summary: "Whether a target is in the workspace's scope, and which entry decided.", role: "viewer", params: []string{"target"}, status: 200, response: "ScopeDecision"},

	{method: "GET", path: "/api/v1/workspaces/{ws}/cloud", summary: "The workspace's cloud environment (VMs with tags, firewall rules between tags).", role: "viewer", status: 200, response: "CloudEnvDoc"},
	{method: "PUT", path: "/api/v1/workspaces/{ws}/cloud", summary: "Replace the workspace's cloud environment; validated and analysed before it is stored.", role: "operator", body: "CloudEnvDoc", status: 200, response: "CloudEnv"},
	{method: "GET", path: "/api/v1/workspaces/{ws}/attack", summary: "Which VMs can attack ?vm_id=: sorted ids; transitive (lateral movement) unless mode=direct (one hop) or mode=tag (surfacescan's tag closure).", role: "viewer", params: []string{"vm_id", "mode"}, status: 200, response: "VMIDs"},

	{method: "GET", path: "/api/v1/workspaces/{ws}/webhook", summary: "The workspace's webhook (never its secret).", role: "viewer", status: 200, response: "Webhook"},
	{method: "PUT", path: "/api/v1/workspaces/{ws}/webhook", summary: "Set the webhook that receives task.failed and scan.finished events, signed with HMAC-SHA256 (X-Scanfleet-Signature); without a secret one is made and shown once.", role: "operator", body: "WebhookPut", status: 200, response: "Webhook"},
	{method: "DELETE", path: "/api/v1/workspaces/{ws}/webhook", summary: "Remove the workspace's webhook.", role: "operator", status: 204},
	{method: "GET", path: "/api/v1/workspaces/{ws}/webhook/deliveries", summary: "The webhook's delivery log, newest first: each event, its attempts, last answer and error.", role: "viewer", params: []string{"limit"}, status: 200, response: "DeliveryList"},

	{method: "GET", path: "/api/v1/scans", summary: "List scans.", role: "viewer", params: []string{"workspace", "type", "enabled", "cursor", "limit"}, status: 200, response: "ScanList"},
	{method: "POST", path: "/api/v1/scans", summary: "Create a scan; args are validated against the task type.", role: "operator", body: "ScanCreate", status: 201, response: "Scan"},
	{method: "GET", path: "/api/v1/scans/{id}", summary: "Get a scan.", role: "viewer", status: 200, response: "Scan"},
	{method: "PATCH", path: "/api/v1/scans/{id}", summary: "Change a scan.", role: "operator", body: "ScanUpdate", status: 200, response: "Scan"},
	{method: "DELETE", path: "/api/v1/scans/{id}", summary: "Delete a scan; its tasks stay.", role: "operator", status: 204},
	{method: "POST", path: "/api/v1/scans/{id}/run", summary: "Run a scan now; answers with the tasks it created.", role: "operator", status: 201, response: "TaskRun"},

	{method: "GET", path: "/api/v1/scans/{id}/history", summary: "The scan's tasks, newest first (25 a page), with input, output, error, times and the first ?logs= lines of each log; filters as the task list.", role: "viewer", params: []string{"status", "workspace", "since", "until", "logs", "cursor", "limit"}, status: 200, response: "ScanHistory"},
	{method: "GET", path: "/api/v1/tasks", summary: "List tasks, newest first.", role: "viewer", params: []string{"status", "scan", "workspace", "worker", "since", "until", "cursor", "limit"}, status: 200, response: "TaskList"},
	{method: "POST", path: "/api/v1/tasks", summary: "Submit one task over targets in a workspace's scope, outside any scan; a target wholly out of scope is refused.", role: "operator", body: "TaskCreate", status: 201, response: "Task"},
	{method: "GET", path: "/api/v1/tasks/{id}", summary: "Get a task.", role: "viewer", status: 200, response: "Task"},
	{method: "GET", path: "/api/v1/tasks/{id}/logs", summary: "A task's log lines after line ?after=; with ?follow=1 a text/event-stream of lines until the task ends.", role: "viewer", params: []string{"after", "limit", "follow"}, status: 200, response: "TaskLogs"},

	{method: "GET", path: "/api/v1/tasks/{id}/artifacts", summary: "Files a task produced (packet captures), with size and SHA-256.", role: "viewer", status: 200, response: "ArtifactList"},
	{method: "GET", path: "/api/v1/tasks/{id}/artifacts/{name}", summary: "Download a file a task produced.", role: "viewer", status: 200, response: "binary"},
	{method: "POST", path: "/api/v1/tasks/{id}/cancel", summary: "Cancel a task: at once before it starts, else its worker stops it within seconds.", role: "operator", status: 202, response: "Task"},
	{method: "GET", path: "/api/v1/workers", summary: "Workers with their pool, site, capabilities and state (online, busy, idle, offline).", role: "viewer", status: 200, response: "WorkerList"},
	{method: "GET", path: "/api/v1/launches", summary: "The launcher's attempts to start workers, newest first (outcome, every placement tried, the worker that enrolled), and what it last saw of each pool.", role: "viewer", status: 200, response: "Launches"},
	{method: "DELETE", path: "/api/v1/workers/{id}", summary: "Revoke a worker: its credential stops working at once, its NATS connections close, and its tasks go to other workers.", role: "admin", status: 204},
	{method: "GET", path: "/api/v1/worker-tokens", summary: "List join tokens (never their secrets), with who used them.", role: "admin", status: 200, response: "JoinTokenList"},
	{method: "DELETE", path: "/api/v1/worker-tokens/{id}", summary: "Revoke a join token; workers that enrolled with it keep their credentials.", role: "admin", status: 204},
	{method: "POST", path: "/api/v1/worker-tokens", summary: "Create a one-time join token for a worker; its secret is in this answer only.", role: "admin", body: "JoinTokenCreate", status: 201, response: "JoinTokenCreated"},
	{method: "POST", path: "/api/v1/workers/enrol", summary: "A worker enrols with a join token and receives its credential (once).", role: "", body: "Enrol", status: 201, response: "Enrolled"},
	{method: "POST", path: "/api/v1/worker/announce", summary: "A starting worker's version, detected capabilities and executors, with the task types of its external executors. Worker credential.", role: "worker", body: "Announcement", status: 204},
	{method: "POST", path: "/api/v1/worker/heartbeat", summary: "Worker heartbeat; answers with commands. Worker credential.", role: "worker", body: "Heartbeat", status: 200, response: "Poll"},
	{method: "POST", path: "/api/v1/worker/poll", summary: "HTTP transport long poll (≤ 30 s): leases tasks of the worker's pool and site, and returns commands. Worker credential.", role: "worker", body: "PollRequest", status: 200, response: "Poll"},
	{method: "POST", path: "/api/v1/worker/claim", summary: "Start several dispatched tasks at once; answers with those claimed (the rest are stale or not this worker's). Worker credential.", role: "worker", body: "ClaimBatch", status: 200, response: "TaskRun"},
	{method: "POST", path: "/api/v1/worker/tasks/{id}/claim", summary: "Start a dispatched task and take its lease. Worker credential.", role: "worker", status: 200, response: "Task"},
	{method: "POST", path: "/api/v1/worker/tasks/{id}/renew", summary: "Renew a held task's lease and report progress; answers whether cancel was requested. Worker credential.", role: "worker", body: "Renew", status: 200, response: "RenewResult"},
	{method: "POST", path: "/api/v1/worker/tasks/{id}/logs", summary: "Append log lines of a held task. Worker credential.", role: "worker", params: []string{"attempt"}, body: "Logs", status: 204},
	{method: "POST", path: "/api/v1/worker/tasks/{id}/records", summary: "Ingest a chunk of a held task's records (JSON Lines). Worker credential.", role: "worker", params: []string{"attempt"}, body: "jsonl", status: 200, response: "IngestResult"},
	{method: "PUT", path: "/api/v1/worker/tasks/{id}/artifacts/{name}", summary: "Store a file a held task produced; the body is the file, at most 256 MiB. Worker credential.", role: "worker", params: []string{"attempt"}, body: "binary", status: 200, response: "Artifact"},
	{method: "GET", path: "/api/v1/worker/tasks/{id}/cloud", summary: "The cloud environment of a held task's workspace, for internal and baremetal workers (task data). Worker credential.", role: "worker", status: 200, response: "CloudEnvDoc"},
	{method: "POST", path: "/api/v1/worker/finish", summary: "Report several held tasks' outcomes in one transaction; each result says the status it reached or why it was refused. Worker credential.", role: "worker", body: "FinishBatch", status: 200, response: "FinishResults"},
	{method: "POST", path: "/api/v1/worker/tasks/{id}/finish", summary: "Report a held task's outcome, or hand it back (status requested). Worker credential.", role: "worker", body: "Finish", status: 200, response: "Task"},

	{method: "GET", path: "/api/v1/tokens", summary: "List API tokens (never their secrets).", role: "admin", status: 200, response: "TokenList"},
	{method: "POST", path: "/api/v1/tokens", summary: "Create an API token; its secret is in this answer only.", role: "admin", body: "TokenCreate", status: 201, response: "TokenCreated"},
	{method: "DELETE", path: "/api/v1/tokens/{id}", summary: "Revoke an API token.", role: "admin", status: 204},
}

var paramDocs = map[string]string{
	"cursor": "Opaque cursor from a previous page's next_cursor.", "limit": "Page size, 1–1000 (default 100).",
	"kind": "Record kind: host, domain, service, certificate, http, finding.", "key": "Exact natural key.",
	"q": "Substring of the natural key.", "task": "Task id.", "seen_since": "RFC 3339 time; records last seen at or after it.",
	"format": "json (default) or jsonl.", "target": "IP, CIDR, host name or URL.", "workspace": "Workspace name.",
	"type": "Task type.", "enabled": "true or false.", "status": "Task status; repeat or comma-separate for several.",
	"scan": "Scan id.", "worker": "Worker id: the tasks it holds or held.", "since": "RFC 3339 time; created at or after.", "until": "RFC 3339 time; created before.",
	"after": "Return lines numbered after this one.", "attempt": "The attempt the worker runs; a stale one is refused.", "follow": "1 to stream lines as server-sent events until the task ends.", "logs": "How many of each task's first log lines to include (0–1000, default 20).",
	"vm_id": "A VM id of the cloud environment.", "mode": "transitive (default), direct or tag.",
}

func obj(props map[string]any, required ...string) map[string]any {
	m := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		m["required"] = required
	}
	return m
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }
func arr(items any) map[string]any   { return map[string]any{"type": "array", "items": items} }
func listOf(name string) map[string]any {
	return obj(map[string]any{"items": arr(ref(name)), "next_cursor": str})
}

var (
	str     = map[string]any{"type": "string"}
	integer = map[string]any{"type": "integer"}
	boolean = map[string]any{"type": "boolean"}
	tstamp  = map[string]any{"type": "string", "format": "date-time"}
	ntstamp = map[string]any{"type": "string", "format": "date-time", "nullable": true}
	strs    = arr(str)
	anyObj  = map[string]any{"type": "object", "additionalProperties": true}
	binary  = map[string]any{"type": "string", "format": "binary"}
)

var schemas = map[string]any{
	"Error":  obj(map[string]any{"error": obj(map[string]any{"code": str, "message": str, "details": strs}, "code", "message")}, "error"),
	"Health": obj(map[string]any{"status": str, "version": str}),
	"Scope":  obj(map[string]any{"include": strs, "exclude": strs, "allow_broad": boolean}),
	"Workspace": obj(map[string]any{"id": str, "name": str, "description": str, "scope": ref("Scope"),
		"created_at": tstamp, "updated_at": tstamp, "record_counts": map[string]any{"type": "object", "additionalProperties": integer}}),
	"WorkspaceCreate": obj(map[string]any{"name": str, "description": str, "scope": ref("Scope")}, "name"),
	"WorkspaceUpdate": obj(map[string]any{"description": str, "scope": ref("Scope")}),
	"WorkspaceList":   listOf("Workspace"),
	"ScopeDecision":   obj(map[string]any{"target": str, "in_scope": boolean, "rule": str, "reason": str}),
	"Param": obj(map[string]any{"name": str, "type": map[string]any{"type": "string",
		"enum": []string{"string", "integer", "boolean", "list", "ip", "cidr", "port-list", "duration"}},
		"mandatory": boolean, "default": map[string]any{}, "description": str, "min": integer, "max": integer}),
	"TaskType": obj(map[string]any{"name": str, "description": str, "params": arr(ref("Param")),
		"requirements": arr(map[string]any{"type": "string", "enum": []string{"raw_sockets", "task_data", "recon_data", "queue_access"}}),
		"pool":         map[string]any{"type": "string", "enum": []string{"external", "internal", "baremetal"}}, "timeout": str}),
	"TaskTypeList": listOf("TaskType"),
	"ScanCreate": obj(map[string]any{"name": str, "type": str, "args": anyObj, "workspaces": strs,
		"frequency": map[string]any{"type": "string", "example": "24h"}, "cron": map[string]any{"type": "string", "example": "0 3 * * *"},
		"timeout": str, "site": str, "single_run": boolean, "enabled": boolean, "manual_run_pending": boolean, "chunk_size": integer}, "name", "type", "workspaces"),
	"ScanUpdate": obj(map[string]any{"name": str, "args": anyObj, "workspaces": strs, "frequency": str, "cron": str,
		"timeout": str, "site": str, "single_run": boolean, "enabled": boolean, "manual_run_pending": boolean, "chunk_size": integer}),
	"Scan": obj(map[string]any{"id": str, "name": str, "type": str, "args": anyObj, "workspaces": strs, "frequency": str,
		"cron": str, "timeout": str, "site": str, "single_run": boolean, "enabled": boolean, "manual_run_pending": boolean, "chunk_size": integer,
		"last_run_at": ntstamp, "created_at": tstamp, "updated_at": tstamp}),
	"ScanList": listOf("Scan"),
	"Task": obj(map[string]any{"id": str, "scan_id": str, "type": str, "workspace": str, "pool": str, "site": str,
		"status":   map[string]any{"type": "string", "enum": []string{"created", "queued", "requested", "started", "finished", "failed", "cancelled"}},
		"attempts": integer, "max_attempts": integer, "worker_id": str, "timeout": str, "input": anyObj, "output": anyObj, "error": str,
		"created_at": tstamp, "queued_at": ntstamp, "requested_at": ntstamp, "started_at": ntstamp, "finished_at": ntstamp,
		"failed_at": ntstamp, "cancelled_at": ntstamp, "updated_at": tstamp, "lease_expires_at": ntstamp, "cancel_requested": boolean,
		"progress": obj(map[string]any{"done": integer, "total": integer}), "records": integer, "log_truncated": boolean}),
	"TaskList": listOf("Task"),
	"TaskRun":  obj(map[string]any{"tasks": arr(ref("Task"))}),
	"TaskLogs": obj(map[string]any{"items": arr(obj(map[string]any{"seq": integer, "time": tstamp, "line": str})), "next_after": integer}),
	"Record": map[string]any{"type": "object", "additionalProperties": true, "description": "A flat record: its own fields plus id, key, workspace, first_seen, last_seen, first_task, last_task.",
		"properties": map[string]any{"kind": map[string]any{"type": "string", "enum": []string{"host", "domain", "service", "certificate", "http", "finding"}},
			"id": str, "key": str, "workspace": str, "first_seen": tstamp, "last_seen": tstamp, "first_task": str, "last_task": str}},
	"RecordList": listOf("Record"),
	"CloudEnvDoc": obj(map[string]any{
		"vms":      arr(obj(map[string]any{"vm_id": str, "name": str, "tags": strs}, "vm_id")),
		"fw_rules": arr(obj(map[string]any{"fw_id": str, "source_tag": str, "dest_tag": str}, "source_tag", "dest_tag"))}),
	"CloudEnv":     obj(map[string]any{"workspace": str, "vm_count": integer, "rule_count": integer, "updated_at": tstamp}),
	"VMIDs":        strs,
	"IngestResult": obj(map[string]any{"accepted": integer, "new": integer, "changed": integer, "unchanged": integer}),
	"Token": obj(map[string]any{"id": str, "name": str, "role": map[string]any{"type": "string", "enum": []string{"admin", "operator", "viewer"}},
		"prefix": str, "created_at": tstamp, "last_used_at": ntstamp}),
	"TokenList": listOf("Token"),
	"Worker": obj(map[string]any{"id": str, "name": str, "pool": str, "site": str, "version": str, "capabilities": strs, "executors": strs,
		"transport": str, "concurrency": integer, "running": integer, "draining": boolean, "created_at": tstamp, "last_seen_at": tstamp,
		"state": map[string]any{"type": "string", "enum": []string{"online", "busy", "idle", "offline"}}}),
	"WorkerList":       listOf("Worker"),
	"JoinTokenCreate":  obj(map[string]any{"name": str, "pool": str, "site": str, "ttl": str}),
	"JoinTokenCreated": obj(map[string]any{"id": str, "name": str, "pool": str, "site": str, "expires_at": tstamp, "token": str}),
	"Enrol": obj(map[string]any{"join_token": str, "name": str, "pool": str, "site": str, "version": str, "capabilities": strs,
		"executors": strs, "transport": str, "concurrency": integer}, "join_token", "name", "pool", "transport", "concurrency"),
	"Enrolled":      obj(map[string]any{"worker_id": str, "credential": str, "nats": obj(map[string]any{"url": str})}),
	"Heartbeat":     obj(map[string]any{"running": integer, "draining": boolean, "session": str}),
	"PollRequest":   obj(map[string]any{"max": integer, "wait": str, "running": integer, "draining": boolean, "session": str}),
	"Poll":          obj(map[string]any{"tasks": arr(ref("Task")), "commands": arr(obj(map[string]any{"type": str, "task_id": str}))}),
	"Renew":         obj(map[string]any{"progress": obj(map[string]any{"done": integer, "total": integer})}),
	"RenewResult":   obj(map[string]any{"cancel_requested": boolean, "lease_expires_at": tstamp}),
	"Logs":          obj(map[string]any{"lines": strs}),
	"Artifact":      obj(map[string]any{"task_id": str, "name": str, "content_type": str, "size": integer, "sha256": str, "created_at": tstamp}),
	"ArtifactList":  obj(map[string]any{"items": arr(ref("Artifact"))}),
	"Finish":        obj(map[string]any{"status": str, "output": anyObj, "error": str, "logs": strs, "attempt": integer}, "status"),
	"FinishBatch":   obj(map[string]any{"outcomes": arr(obj(map[string]any{"task_id": str, "status": str, "output": anyObj, "error": str, "logs": strs, "attempt": integer}, "task_id", "status"))}, "outcomes"),
	"FinishResults": obj(map[string]any{"results": arr(obj(map[string]any{"task_id": str, "status": str, "error": obj(map[string]any{"code": str, "message": str})}))}),
	"TokenCreate":   obj(map[string]any{"name": str, "role": map[string]any{"type": "string", "enum": []string{"admin", "operator", "viewer"}}}, "name", "role"),
	"TokenCreated":  map[string]any{"allOf": []any{ref("Token"), obj(map[string]any{"token": str})}},
}

var (
	openAPIOnce sync.Once
	openAPIDoc  map[string]any
)

// OpenAPI returns the OpenAPI 3 document of the API.
func OpenAPI(version string) map[string]any {
	openAPIOnce.Do(func() { openAPIDoc = buildOpenAPI() })
	doc := make(map[string]any, len(openAPIDoc))
	for k, v := range openAPIDoc {
		doc[k] = v
	}
	doc["info"] = map[string]any{"title": "scanfleet API", "version": version,
		"description": "Distributed attack-surface scanning: workspaces with a scope, scans, tasks and an asset inventory."}
	return doc
}

func buildOpenAPI() map[string]any {
	errResp := map[string]any{"description": "Error", "content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}}
	paths := map[string]any{}
	for _, op := range operations {
		item, _ := paths[op.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[op.path] = item
		}
		var params []any
		for _, seg := range strings.Split(op.path, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": str})
			}
		}
		for _, p := range op.params {
			params = append(params, map[string]any{"name": p, "in": "query", "description": paramDocs[p], "schema": str})
		}
		resp := map[string]any{"description": http.StatusText(op.status)}
		switch op.response {
		case "":
		case "text":
			resp["content"] = map[string]any{"text/plain": map[string]any{"schema": str}}
		case "object":
			resp["content"] = map[string]any{"application/json": map[string]any{"schema": anyObj}}
		case "binary":
			resp["content"] = map[string]any{"application/octet-stream": map[string]any{"schema": binary}}
		default:
			resp["content"] = map[string]any{"application/json": map[string]any{"schema": ref(op.response)}}
		}
		o := map[string]any{
			"summary":     op.summary,
			"operationId": strings.ToLower(op.method) + strings.NewReplacer("/api/v1", "", "/", "_", "{", "", "}", "", "-", "_", ".", "_").Replace(op.path),
			"responses":   map[string]any{itoa3(op.status): resp, "default": errResp},
		}
		if len(params) > 0 {
			o["parameters"] = params
		}
		switch op.role {
		case "":
			o["security"] = []any{}
		case "worker":
			o["security"] = []any{map[string]any{"worker": []any{}}}
			o["description"] = "Needs a worker credential (sfw_…), which no other route accepts."
		default:
			o["description"] = "Needs a token with the " + op.role + " role or higher."
		}
		switch op.body {
		case "":
		case "binary":
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/octet-stream": map[string]any{"schema": binary}}}
		case "jsonl":
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/x-ndjson": map[string]any{"schema": str},
				"application/json":     map[string]any{"schema": anyObj},
			}}
		default:
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": ref(op.body)}}}
		}
		item[strings.ToLower(op.method)] = o
	}
	return map[string]any{
		"openapi": "3.0.3",
		"servers": []any{map[string]any{"url": "/"}},
		"paths":   paths,
		"components": map[string]any{
			"schemas": schemas,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"},
				"worker": map[string]any{"type": "http", "scheme": "bearer", "description": "A worker credential from /api/v1/workers/enrol."}},
		},
		"security": []any{map[string]any{"bearer": []any{}}},
	}
}

func itoa3(n int) string {
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, OpenAPI(s.cfg.Version))
}
