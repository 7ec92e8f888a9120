package attacksurface

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Findings returns one finding record, as the flat JSON object the
// inventory ingests, for every VM that an attacker on a VM tagged
// exposedTag can reach through the firewall rules, lateral movement
// included (see Reachable). The VMs carrying exposedTag themselves are
// included only when a rule chain leads back to them. Records are ordered by
// vm_id.
func Findings(g *Graph, exposedTag string) []map[string]any {
	reached := g.Reachable(exposedTag)
	sort.Strings(reached)
	out := make([]map[string]any, 0, len(reached))
	for _, id := range reached {
		out = append(out, map[string]any{
			"kind":     "finding",
			"vm_id":    id,
			"name":     fmt.Sprintf("VM reachable from the %q tag", exposedTag),
			"severity": "medium",
			"description": fmt.Sprintf("An attacker on any VM tagged %q can reach VM %s through the firewall rules, "+
				"moving laterally through the VMs it reaches on the way.", exposedTag, id),
			"exposed_tag": exposedTag,
		})
	}
	return out
}

// TaskType is the attack-surface task type: it reads the workspace's cloud
// environment (so it needs task data and runs in the internal pool) and
// turns it into findings for the VMs reachable from an exposed tag.
func TaskType() *scanfleet.TaskType {
	return &scanfleet.TaskType{
		Name:        "attack-surface",
		Description: "Finds the VMs of the workspace's cloud environment that an attacker on an exposed tag can reach through the firewall rules.",
		Params: []scanfleet.Param{
			{Name: "exposed_tag", Type: scanfleet.ParamString, Default: "internet", Description: "The tag of VMs an attacker holds first, e.g. the internet-facing ones."},
		},
		Requirements: []scanfleet.Requirement{scanfleet.RequireTaskData},
		Timeout:      10 * time.Minute,
	}
}

// Executor runs attack-surface tasks: it reads the workspace's cloud
// environment and emits a finding for every VM reachable from the exposed
// tag.
type Executor struct{}

var _ scanfleet.Executor = Executor{}

// TaskType returns the attack-surface task type.
func (Executor) TaskType() *scanfleet.TaskType { return TaskType() }

// Run analyses the task's workspace's environment.
func (Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	data := env.Data()
	if data == nil {
		return fmt.Errorf("attack-surface needs task data, which this worker cannot read")
	}
	tag, _ := in.Args["exposed_tag"].(string)
	if tag == "" {
		tag = "internet"
	}
	ce, err := data.GetCloud(ctx, in.Workspace)
	if err != nil {
		return fmt.Errorf("read cloud environment: %w", err)
	}
	e, err := Parse(bytes.NewReader(ce.Data))
	if err != nil {
		return err
	}
	g, err := Build(e)
	if err != nil {
		return err
	}
	env.Log(fmt.Sprintf("analysing %d VMs and %d rules from tag %q", len(e.VMs), len(e.Rules), tag))
	findings := Findings(g, tag)
	for i, f := range findings {
		if err := env.Emit(ctx, f); err != nil {
			return err
		}
		env.Progress(int64(i+1), int64(len(findings)))
	}
	env.Log(fmt.Sprintf("%d VMs reachable from tag %q", len(findings), tag))
	return nil
}
