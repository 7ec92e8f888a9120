package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
)

func (a *app) recordsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "records", Aliases: []string{"record"}, Short: "Ingest and list inventory records"}

	var format, task string
	ingest := &cobra.Command{
		Use:   "ingest WORKSPACE [FILE|-]",
		Short: "Ingest JSON Lines of records or Faraday bulk_create documents",
		Long: `Ingest records into a workspace. FILE (or standard input) holds JSON Lines: each
line a record such as {"kind":"service","ip":"10.0.0.7","port":443} or a Faraday
bulk_create document. With --format json (or a .json file) FILE is one JSON
document instead. Everything is validated before anything is stored.`,
		Args: cobra.RangeArgs(1, 2),
	}
	io_ := addClientFlags(ingest)
	ingest.Flags().StringVar(&format, "format", "", "jsonl or json (default: json for *.json files, else jsonl)")
	ingest.Flags().StringVar(&task, "task", "", "attribute the records to this task id")
	envHelp(ingest.Flags())
	ingest.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := io_.client()
		if err != nil {
			return err
		}
		var in io.Reader = a.stdin
		name := "-"
		if len(args) == 2 && args[1] != "-" {
			name = args[1]
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		if format == "" {
			format = "jsonl"
			if strings.HasSuffix(name, ".json") {
				format = "json"
			}
		}
		ctype := map[string]string{"jsonl": "application/x-ndjson", "json": "application/json"}[format]
		if ctype == "" {
			return usagef("--format %q is not jsonl or json", format)
		}
		path := "/api/v1/workspaces/" + url.PathEscape(args[0]) + "/records"
		if task != "" {
			path += "?task=" + url.QueryEscape(task)
		}
		var res scanfleet.IngestResult
		if err := c.do(cmd.Context(), http.MethodPost, path, rawBody{r: in, contentType: ctype}, &res); err != nil {
			return err
		}
		t := &table{headers: []string{"ACCEPTED", "NEW", "CHANGED", "UNCHANGED"}}
		t.add(res, fmt.Sprint(res.Accepted), fmt.Sprint(res.New), fmt.Sprint(res.Changed), fmt.Sprint(res.Unchanged))
		return printOne(a.stdout, io_.output, res, t)
	}

	var kind, key, search, seenSince string
	lst := &cobra.Command{Use: "list WORKSPACE", Short: "List a workspace's records", Args: cobra.ExactArgs(1)}
	lo := addClientFlags(lst)
	lp := addPageFlags(lst)
	lst.Flags().StringVar(&kind, "kind", "", "only this kind: host, domain, service, certificate, http, finding")
	lst.Flags().StringVar(&key, "key", "", "only the record with this natural key")
	lst.Flags().StringVar(&search, "q", "", "only records whose key contains this")
	lst.Flags().StringVar(&task, "task", "", "only records last seen by this task")
	lst.Flags().StringVar(&seenSince, "seen-since", "", "only records last seen at or after this RFC 3339 time")
	envHelp(lst.Flags())
	lst.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := lo.client()
		if err != nil {
			return err
		}
		q := lp.values()
		for k, v := range map[string]string{"kind": kind, "key": key, "q": search, "task": task, "seen_since": seenSince} {
			if v != "" {
				q.Set(k, v)
			}
		}
		return printList(cmd.Context(), a, c, "/api/v1/workspaces/"+url.PathEscape(args[0])+"/records", q, lp, lo.output, recordTable)
	}
	cmd.AddCommand(ingest, lst)
	return cmd
}

func recordTable(items ...map[string]any) *table {
	t := &table{headers: []string{"KIND", "KEY", "DETAILS", "FIRST SEEN", "LAST SEEN"}}
	for _, r := range items {
		t.add(r, str(r["kind"]), str(r["key"]), details(r), shortTime(r["first_seen"]), shortTime(r["last_seen"]))
	}
	return t
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func shortTime(v any) string {
	s := str(v)
	if len(s) >= 19 {
		return strings.Replace(s[:19], "T", " ", 1)
	}
	return s
}

// details shows a record's own fields, less those the other columns show.
func details(r map[string]any) string {
	skip := map[string]bool{"kind": true, "key": true, "id": true, "workspace": true, "first_seen": true, "last_seen": true, "first_task": true, "last_task": true}
	var keys []string
	for k := range r {
		if !skip[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := str(r[k])
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}
