package attacksurface_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"

	"github.com/scanfleet/scanfleet/attacksurface"
)

const exampleEnv = `{
  "vms": [
    {"vm_id": "web-1",  "name": "web",  "tags": ["web"]},
    {"vm_id": "app-1",  "name": "app",  "tags": ["app", "monitored"]},
    {"vm_id": "db-1",   "name": "db",   "tags": ["db"]},
    {"vm_id": "jump-1", "name": "jump", "tags": ["vpn"]}
  ],
  "fw_rules": [
    {"fw_id": "fw-1", "source_tag": "web", "dest_tag": "app"},
    {"fw_id": "fw-2", "source_tag": "app", "dest_tag": "db"},
    {"fw_id": "fw-3", "source_tag": "vpn", "dest_tag": "monitored"}
  ]
}`

// The worked example of the package doc: the three modes differ on db-1.
func ExampleGraph_Attackers() {
	env, err := attacksurface.Parse(strings.NewReader(exampleEnv))
	if err != nil {
		panic(err)
	}
	g, err := attacksurface.Build(env)
	if err != nil {
		panic(err)
	}
	for _, mode := range []attacksurface.Mode{attacksurface.ModeDirect, attacksurface.ModeTag, attacksurface.ModeTransitive} {
		ids, _ := g.Attackers("db-1", mode)
		fmt.Printf("%-10s %q\n", mode, ids)
	}
	isolated, _ := g.Attackers("jump-1", attacksurface.ModeTransitive)
	fmt.Printf("jump-1     %q\n", isolated)
	_, err = g.Attackers("nope", attacksurface.ModeTransitive)
	fmt.Println(err)
	// Output:
	// direct     ["app-1"]
	// tag        ["app-1" "web-1"]
	// transitive ["app-1" "jump-1" "web-1"]
	// jump-1     []
	// vm "nope" not found
}

func ExampleGraph_Reachable() {
	env, _ := attacksurface.Parse(strings.NewReader(exampleEnv))
	g, _ := attacksurface.Build(env)
	fmt.Printf("%q\n", g.Reachable("vpn"))
	fmt.Printf("%q\n", g.Reachable("internet"))
	// Output:
	// ["app-1" "db-1"]
	// []
}

func ExampleParse_error() {
	_, err := attacksurface.Parse(strings.NewReader("{\n  \"vms\": [\n    {\"vm_id\": \"a\"}\n    {\"vm_id\": \"b\"}\n  ]\n}"))
	fmt.Println(err)
	_, err = attacksurface.Parse(strings.NewReader(`{"vms":[{"vm_id":"a"},{"vm_id":"a"}]}`))
	fmt.Println(err)
	// Output:
	// line 4, column 5: invalid character '{' after array element
	// invalid environment: duplicate vm_id "a" at vms[0] and vms[1]
}

func ExampleNewHandler() {
	env, _ := attacksurface.Parse(strings.NewReader(exampleEnv))
	g, _ := attacksurface.Build(env)
	srv := httptest.NewServer(attacksurface.NewHandler(g))
	defer srv.Close()
	get := func(path string) (int, []byte) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	for _, path := range []string{"/api/v1/attack?vm_id=db-1", "/api/v1/attack?vm_id=x"} {
		status, body := get(path)
		fmt.Println(status, string(body))
	}
	_, body := get("/api/v1/stats")
	var stats attacksurface.StatsSnapshot
	_ = json.Unmarshal(body, &stats)
	fmt.Println(stats.VMCount, stats.RequestCount, stats.AverageRequestTime > 0)
	// Output:
	// 200 ["app-1","jump-1","web-1"]
	// 404 {"error":{"code":"not_found","message":"vm \"x\" not found"}}
	// 4 2 true
}

func ExampleGenerate() {
	env := attacksurface.Generate(attacksurface.GenConfig{VMs: 1000, Tags: 100, Rules: 300, Seed: 1})
	var buf bytes.Buffer
	if err := env.WriteJSON(&buf); err != nil {
		panic(err)
	}
	back, _ := attacksurface.Parse(&buf)
	fmt.Println(len(back.VMs), len(back.Rules))
	// Output:
	// 1000 300
}
