package http_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	sfhttp "github.com/scanfleet/scanfleet/http"
)

const cloudEnv = `{"vms":[
 {"vm_id":"web-1","name":"web","tags":["web"]},
 {"vm_id":"app-1","name":"app","tags":["app","monitored"]},
 {"vm_id":"db-1","name":"db","tags":["db"]},
 {"vm_id":"jump-1","name":"jump","tags":["vpn"]}],
 "fw_rules":[
 {"fw_id":"r1","source_tag":"web","dest_tag":"app"},
 {"fw_id":"r2","source_tag":"app","dest_tag":"db"},
 {"fw_id":"r3","source_tag":"vpn","dest_tag":"monitored"}]}`

func TestCloudAttack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	e.createWorkspace("acme", "10.0.0.0/24")

	r := e.do("GET", "/api/v1/workspaces/acme/attack?vm_id=db-1", e.viewer, "", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Contains(t, r.errorMessage(t), "no cloud environment")

	r = e.do("PUT", "/api/v1/workspaces/acme/cloud", e.viewer, "application/json", strings.NewReader(cloudEnv))
	require.Equal(t, http.StatusForbidden, r.status)
	r = e.do("PUT", "/api/v1/workspaces/acme/cloud", e.operator, "application/json", strings.NewReader(cloudEnv))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, float64(4), r.json(t)["vm_count"])
	require.Equal(t, float64(3), r.json(t)["rule_count"])

	attack := func(query string) []string {
		r := e.do("GET", "/api/v1/workspaces/acme/attack?"+query, e.viewer, "", nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", query, r.body)
		var ids []string
		require.NoError(t, json.Unmarshal(r.body, &ids))
		return ids
	}
	require.Equal(t, []string{"app-1", "jump-1", "web-1"}, attack("vm_id=db-1"))
	require.Equal(t, []string{"app-1"}, attack("vm_id=db-1&mode=direct"))
	require.Equal(t, []string{"app-1", "web-1"}, attack("vm_id=db-1&mode=tag"))
	require.Equal(t, []string{}, attack("vm_id=jump-1"))

	for _, tt := range []struct {
		query  string
		status int
		want   string
	}{
		{"vm_id=nope", 404, `"nope"`},
		{"", 400, "vm_id"},
		{"vm_id=db-1&mode=sideways", 400, "mode"},
	} {
		r := e.do("GET", "/api/v1/workspaces/acme/attack?"+tt.query, e.viewer, "", nil)
		require.Equal(t, tt.status, r.status, tt.query)
		require.Contains(t, r.errorMessage(t), tt.want, tt.query)
	}

	// The stored environment round-trips.
	r = e.do("GET", "/api/v1/workspaces/acme/cloud", e.viewer, "", nil)
	require.Equal(t, http.StatusOK, r.status)
	var doc struct {
		VMs []map[string]any `json:"vms"`
	}
	require.NoError(t, json.Unmarshal(r.body, &doc))
	require.Len(t, doc.VMs, 4)

	// Bad environments are refused and the stored one stays.
	for _, tt := range []struct{ body, want string }{
		{`{"vms":[{"vm_id":"a"},{"vm_id":"a"}]}`, `"a"`},
		{"{\"vms\":[\n{\"vm_id\":}]}", "line 2"},
	} {
		r := e.do("PUT", "/api/v1/workspaces/acme/cloud", e.operator, "application/json", strings.NewReader(tt.body))
		require.Equal(t, http.StatusBadRequest, r.status, "%s", r.body)
		require.Contains(t, r.errorMessage(t), tt.want)
	}
	require.Equal(t, []string{"app-1", "jump-1", "web-1"}, attack("vm_id=db-1"))

	// A new environment replaces the cached analysis.
	r = e.do("PUT", "/api/v1/workspaces/acme/cloud", e.operator, "application/json",
		strings.NewReader(`{"vms":[{"vm_id":"db-1","tags":["db"]},{"vm_id":"x","tags":["db"]}],"fw_rules":[{"source_tag":"db","dest_tag":"db"}]}`))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, []string{"x"}, attack("vm_id=db-1"))
}
