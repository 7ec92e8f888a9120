package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
)

type workspaceJSON struct {
	scanfleet.Workspace
	RecordCounts map[string]int64 `json:"record_counts,omitempty"`
}

func workspaceTable(items ...*workspaceJSON) *table {
	t := &table{headers: []string{"NAME", "INCLUDE", "EXCLUDE", "DESCRIPTION", "CREATED"}}
	for _, w := range items {
		t.add(w, w.Name, strings.Join(w.Scope.Include, ","), orDash(strings.Join(w.Scope.Exclude, ",")), orDash(w.Description), fmtTime(&w.CreatedAt))
	}
	return t
}

func (a *app) workspaceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "workspace", Aliases: []string{"workspaces", "ws"}, Short: "Manage workspaces and their scope"}

	var include, exclude []string
	var desc string
	var broad bool
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a workspace",
		Example: `  scanfleet workspace create acme --include 10.0.0.0/24 --include '*.example.com' --exclude 10.0.0.5`,
		Args:    cobra.ExactArgs(1),
	}
	co := addClientFlags(create)
	create.Flags().StringSliceVar(&include, "include", nil, "scope entries to include: IP, CIDR, example.com or *.example.com (repeat or comma-separate)")
	create.Flags().StringSliceVar(&exclude, "exclude", nil, "scope entries to exclude, which win over includes")
	create.Flags().StringVar(&desc, "description", "", "description")
	create.Flags().BoolVar(&broad, "allow-broad", false, "allow prefixes wider than /8 (IPv4) or /16 (IPv6) and *.tld wildcards")
	envHelp(create.Flags())
	create.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := co.client()
		if err != nil {
			return err
		}
		body := map[string]any{"name": args[0], "description": desc,
			"scope": scanfleet.Scope{Include: nonNil(include), Exclude: nonNil(exclude), AllowBroad: broad}}
		var w workspaceJSON
		if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/workspaces", body, &w); err != nil {
			return err
		}
		return printOne(a.stdout, co.output, &w, workspaceTable(&w))
	}

	lst := &cobra.Command{Use: "list", Short: "List workspaces", Args: cobra.NoArgs}
	lo := addClientFlags(lst)
	lp := addPageFlags(lst)
	envHelp(lst.Flags())
	lst.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := lo.client()
		if err != nil {
			return err
		}
		return printList(cmd.Context(), a, c, "/api/v1/workspaces", lp.values(), lp, lo.output, workspaceTable)
	}

	get := &cobra.Command{Use: "get NAME", Short: "Show a workspace and its record counts", Args: cobra.ExactArgs(1)}
	gopt := addClientFlags(get)
	envHelp(get.Flags())
	get.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := gopt.client()
		if err != nil {
			return err
		}
		var w workspaceJSON
		if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/workspaces/"+url.PathEscape(args[0]), nil, &w); err != nil {
			return err
		}
		if gopt.output != "table" {
			return printOne(a.stdout, gopt.output, &w, workspaceTable(&w))
		}
		if err := workspaceTable(&w).print(a.stdout, "table"); err != nil {
			return err
		}
		kinds := make([]string, 0, len(w.RecordCounts))
		for k := range w.RecordCounts {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			fmt.Fprintf(a.stdout, "  %s records: %d\n", k, w.RecordCounts[k])
		}
		return nil
	}

	var setInclude, setExclude []string
	var setDesc string
	update := &cobra.Command{Use: "update NAME", Short: "Change a workspace's scope or description", Args: cobra.ExactArgs(1)}
	uo := addClientFlags(update)
	update.Flags().StringSliceVar(&setInclude, "include", nil, "replace the include list")
	update.Flags().StringSliceVar(&setExclude, "exclude", nil, "replace the exclude list")
	update.Flags().StringVar(&setDesc, "description", "", "new description")
	update.Flags().BoolVar(&broad, "allow-broad", false, "allow very wide prefixes and *.tld wildcards")
	envHelp(update.Flags())
	update.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := uo.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		body := map[string]any{}
		if cmd.Flags().Changed("description") {
			body["description"] = setDesc
		}
		if cmd.Flags().Changed("include") || cmd.Flags().Changed("exclude") || cmd.Flags().Changed("allow-broad") {
			var cur workspaceJSON
			if err := c.do(ctx, http.MethodGet, "/api/v1/workspaces/"+url.PathEscape(args[0]), nil, &cur); err != nil {
				return err
			}
			scope := cur.Scope
			if cmd.Flags().Changed("include") {
				scope.Include = nonNil(setInclude)
			}
			if cmd.Flags().Changed("exclude") {
				scope.Exclude = nonNil(setExclude)
			}
			if cmd.Flags().Changed("allow-broad") {
				scope.AllowBroad = broad
			}
			body["scope"] = scope
		}
		if len(body) == 0 {
			return usagef("nothing to change: pass --include, --exclude, --allow-broad or --description")
		}
		var w workspaceJSON
		if err := c.do(ctx, http.MethodPatch, "/api/v1/workspaces/"+url.PathEscape(args[0]), body, &w); err != nil {
			return err
		}
		return printOne(a.stdout, uo.output, &w, workspaceTable(&w))
	}

	del := &cobra.Command{Use: "delete NAME", Short: "Delete a workspace with its records and tasks", Args: cobra.ExactArgs(1)}
	do := addClientFlags(del)
	envHelp(del.Flags())
	del.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := do.client()
		if err != nil {
			return err
		}
		if err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/workspaces/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "deleted workspace %s\n", args[0])
		return nil
	}

	check := &cobra.Command{
		Use:   "check NAME TARGET",
		Short: "Tell whether a target is in the workspace's scope, and why",
		Args:  cobra.ExactArgs(2),
	}
	cko := addClientFlags(check)
	envHelp(check.Flags())
	check.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := cko.client()
		if err != nil {
			return err
		}
		var d struct {
			Target  string `json:"target"`
			InScope bool   `json:"in_scope"`
			Rule    string `json:"rule"`
			Reason  string `json:"reason"`
		}
		path := "/api/v1/workspaces/" + url.PathEscape(args[0]) + "/scope/check?target=" + url.QueryEscape(args[1])
		if err := c.do(cmd.Context(), http.MethodGet, path, nil, &d); err != nil {
			return err
		}
		t := &table{headers: []string{"TARGET", "IN SCOPE", "RULE", "REASON"}}
		t.add(d, d.Target, fmt.Sprint(d.InScope), orDash(d.Rule), d.Reason)
		return printOne(a.stdout, cko.output, d, t)
	}

	cmd.AddCommand(create, lst, get, update, del, check)
	return cmd
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
