package html

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

type inventoryData struct {
	Records                []*scanfleet.Record
	Next                   string
	Query                  url.Values
	Workspaces             []*scanfleet.Workspace
	Kinds                  []scanfleet.RecordKind
	Workspace              string
	Kind                   string
	Search                 string
	Task                   string
	ExportJSONL, ExportCSV string
}

// recordFilter reads the inventory's filters from the query.
func recordFilter(q url.Values) (scanfleet.RecordFilter, error) {
	f := scanfleet.RecordFilter{Workspace: q.Get("workspace"), Search: strings.TrimSpace(q.Get("q")), Task: q.Get("task")}
	if v := q.Get("kind"); v != "" {
		k, err := scanfleet.ParseRecordKind(v)
		if err != nil {
			return f, err
		}
		f.Kind = k
	}
	return f, nil
}

func (u *UI) handleInventory(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	q := r.URL.Query()
	f, err := recordFilter(q)
	if err != nil {
		return err
	}
	f.Page = scanfleet.Page{Cursor: q.Get("cursor"), Limit: 100}
	d := inventoryData{Query: q, Kinds: scanfleet.RecordKinds, Workspace: f.Workspace, Kind: string(f.Kind), Search: f.Search, Task: f.Task}
	if d.Workspaces, _, err = u.b.ListWorkspaces(ctx, scanfleet.Page{Limit: scanfleet.MaxPageLimit}); err != nil {
		return err
	}
	if d.Records, d.Next, err = u.b.ListRecords(ctx, f); err != nil {
		return err
	}
	exp := url.Values{}
	for _, k := range []string{"workspace", "kind", "q", "task"} {
		if v := q.Get(k); v != "" {
			exp.Set(k, v)
		}
	}
	exp.Set("format", "jsonl")
	d.ExportJSONL = "/inventory/export?" + exp.Encode()
	exp.Set("format", "csv")
	d.ExportCSV = "/inventory/export?" + exp.Encode()
	u.render(w, r, http.StatusOK, "inventory", s, "Inventory", d)
	return nil
}

// csvHeader are the export's columns: the server's fields of a record, as
// the records API names them, then the record's own fields as one JSON
// object.
var csvHeader = []string{"kind", "key", "workspace", "first_seen", "last_seen", "first_task", "last_task", "id", "fields"}

// handleExport downloads the records the inventory's filters select, all
// of them, as JSON Lines (the records API's export) or CSV.
func (u *UI) handleExport(w http.ResponseWriter, r *http.Request, _ *session) error {
	q := r.URL.Query()
	f, err := recordFilter(q)
	if err != nil {
		return err
	}
	name := "scanfleet-records"
	if f.Workspace != "" {
		if _, err := u.b.FindWorkspace(r.Context(), f.Workspace); err != nil {
			return err
		}
		name += "-" + f.Workspace
	}
	switch format := q.Get("format"); format {
	case "", "jsonl":
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.jsonl"`)
		u.b.StreamRecords(w, r, f)
		return nil
	case "csv":
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		u.streamCSV(w, r, f)
		return nil
	default:
		return scanfleet.Errorf(scanfleet.EINVALID, "format: %q is not jsonl or csv", format)
	}
}

// streamCSV writes the records page by page, so an export of any size
// uses bounded memory.
func (u *UI) streamCSV(w http.ResponseWriter, r *http.Request, f scanfleet.RecordFilter) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	f.Page.Limit = scanfleet.MaxPageLimit
	for {
		items, next, err := u.b.ListRecords(r.Context(), f)
		if err != nil {
			// The header is gone: end with a row that says so rather
			// than a silent cut.
			_ = cw.Write([]string{"error", scanfleet.ErrorMessage(err)})
			cw.Flush()
			u.logger.Error("ui: export records", "err", err)
			return
		}
		for _, rec := range items {
			own := make(map[string]any, len(rec.Data))
			for k, v := range rec.Data {
				if k != "kind" {
					own[k] = v
				}
			}
			fields, _ := json.Marshal(own)
			if err := cw.Write([]string{string(rec.Kind), rec.Key, rec.Workspace, rec.FirstSeen.UTC().Format(time.RFC3339Nano),
				rec.LastSeen.UTC().Format(time.RFC3339Nano), rec.FirstTask, rec.LastTask, rec.ID, string(fields)}); err != nil {
				return
			}
		}
		cw.Flush()
		if cw.Error() != nil || next == "" {
			return
		}
		f.Page.Cursor = next
	}
}
