package http_test

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	sfhttp "github.com/scanfleet/scanfleet/http"
)

// TestOpenAPICoversRoutes walks the router and fails when a served route is
// missing from /api/v1/openapi.json, or a documented one is not served.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	r := e.do("GET", "/api/v1/openapi.json", e.viewer, "", nil)
	require.Equal(t, http.StatusOK, r.status)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(r.body, &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."))
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}

	srv, err := sfhttp.NewServer(e.store, nil, sfhttp.Config{})
	require.NoError(t, err)
	served := map[string]bool{}
	err = chi.Walk(srv.Handler().(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if route == "/*" {
			return nil // the web UI, mounted at the root: pages, not API
		}
		served[method+" "+strings.TrimSuffix(strings.ReplaceAll(route, "/*/", "/"), "/")] = true
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, served)

	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	require.Empty(t, missing, "routes served but missing from the OpenAPI document")
	require.Empty(t, extra, "routes in the OpenAPI document but not served")
}
