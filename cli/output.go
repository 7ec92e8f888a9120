package cli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// table is what a command prints: JSON items, and the columns a person sees.
type table struct {
	headers []string
	rows    [][]string
	items   []any
}

func (t *table) add(item any, cells ...string) {
	t.items = append(t.items, item)
	t.rows = append(t.rows, cells)
}

// print writes the table in the chosen format.
func (t *table) print(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		items := t.items
		if items == nil {
			items = []any{}
		}
		return enc.Encode(items)
	case "jsonl":
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, it := range t.items {
			if err := enc.Encode(it); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(t.headers); err != nil {
			return err
		}
		if err := cw.WriteAll(t.rows); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.headers, "\t"))
	for _, r := range t.rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// printOne writes a single object: as JSON for json and jsonl, else as the
// table.
func printOne(w io.Writer, format string, item any, t *table) error {
	if format == "json" || format == "jsonl" {
		enc := json.NewEncoder(w)
		if format == "json" {
			enc.SetIndent("", "  ")
		}
		enc.SetEscapeHTML(false)
		return enc.Encode(item)
	}
	return t.print(w, format)
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// moreHint tells the user how to get the next page.
func moreHint(w io.Writer, next string) {
	if next != "" {
		fmt.Fprintf(w, "more results: add --cursor %s, or --all\n", next)
	}
}
