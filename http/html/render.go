package html

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// pageTemplate is one page: the layout, the shared partials and the page's
// own "content".
type pageTemplate = template.Template

// shared are the templates every page is parsed with.
var shared = []string{"templates/layout.html", "templates/partials.html"}

func parseTemplates() (map[string]*pageTemplate, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*pageTemplate{}
	for _, name := range names {
		if name == shared[0] || name == shared[1] {
			continue
		}
		t, err := template.New("").Funcs(funcs).ParseFS(templateFS, append(shared[:2:2], name)...)
		if err != nil {
			return nil, err
		}
		pages[strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")] = t
	}
	return pages, nil
}

// pageData is what every page template receives.
type pageData struct {
	Title     string
	Page      string
	User      *scanfleet.Token
	CanChange bool
	Version   string
	Body      any
}

// render writes a whole page; a request from htmx that names a fragment
// (HX-Target) still gets the whole page, which htmx selects from.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, page string, s *session, title string, body any) {
	d := pageData{Title: title, Page: page, Version: u.cfg.Version, Body: body}
	if s != nil {
		d.User, d.CanChange = s.token, s.canChange()
	}
	u.execute(w, status, page, "layout", d)
}

// renderFragment writes one named template of the page's set, for htmx.
func (u *UI) renderFragment(w http.ResponseWriter, status int, page, name string, s *session, body any) {
	d := pageData{Page: page, Version: u.cfg.Version, Body: body}
	if s != nil {
		d.User, d.CanChange = s.token, s.canChange()
	}
	u.execute(w, status, page, name, d)
}

func (u *UI) execute(w http.ResponseWriter, status int, page, name string, d pageData) {
	t, ok := u.pages[page]
	if !ok {
		u.logger.Error("ui: no template", slog.String("page", page))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// Render to a buffer first, so that a template error is a 500 and not
	// half a page.
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, d); err != nil {
		u.logger.Error("ui: render", slog.String("page", page), slog.String("template", name), slog.Any("err", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

type errorData struct {
	Status  int
	Message string
	Details []string
}

// renderError shows err as a page: its message for an application error,
// "internal error" for anything else, whose cause goes to the log.
func (u *UI) renderError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := scanfleet.ErrorCode(err)
	status := scanfleet.HTTPStatus(code)
	if code == scanfleet.EINTERNAL {
		if r.Context().Err() != nil {
			return // the client went away
		}
		u.logger.Error("ui request", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	d := errorData{Status: status, Message: scanfleet.ErrorMessage(err), Details: scanfleet.ErrorDetails(err)}
	if r.Header.Get("HX-Request") == "true" {
		u.renderFragment(w, status, "error", "error-box", s, d)
		return
	}
	u.render(w, r, status, "error", s, http.StatusText(status), d)
}

// formErrors holds the messages shown next to a form's fields, and the
// one shown above it for problems with no field.
type formErrors map[string]string

// add files err under the field its message names ("name: is empty",
// "args.sleep: …", "scope.include[2]: …"), keyed as the form names it;
// fields maps a message's field to the form's, and a field it does not
// know goes to "" (the whole form).
func (fe formErrors) add(err error, fields map[string]string) {
	msg := scanfleet.ErrorMessage(err)
	if scanfleet.ErrorCode(err) != scanfleet.EINVALID && scanfleet.ErrorCode(err) != scanfleet.ECONFLICT {
		fe[""] = msg
		return
	}
	field, rest, ok := strings.Cut(msg, ": ")
	if !ok || strings.Contains(field, " ") && !strings.Contains(field, " and ") {
		if f, ok := fields["name"]; ok && scanfleet.ErrorCode(err) == scanfleet.ECONFLICT {
			fe[f] = msg // a taken name: 'scan "x" already exists'
			return
		}
		fe[""] = msg
		return
	}
	base, _, _ := strings.Cut(field, "[")
	if f, ok := fields[base]; ok {
		fe[f] = rest
		return
	}
	if f, ok := fields[field]; ok {
		fe[f] = rest
		return
	}
	if strings.HasPrefix(field, "args.") {
		fe["arg."+strings.TrimPrefix(field, "args.")] = rest
		return
	}
	fe[""] = msg
}

var funcs = template.FuncMap{
	"time": func(v any) string {
		switch t := v.(type) {
		case time.Time:
			if t.IsZero() {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		case *time.Time:
			if t == nil || t.IsZero() {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		}
		return fmt.Sprint(v)
	},
	"pretty": prettyJSON,
	"percent": func(p scanfleet.Progress) int {
		if p.Total <= 0 {
			return 0
		}
		return int(min(100, p.Done*100/p.Total))
	},
	"join": func(list any) string {
		switch l := list.(type) {
		case []string:
			return strings.Join(l, ", ")
		case []scanfleet.Requirement:
			s := make([]string, len(l))
			for i, r := range l {
				s[i] = string(r)
			}
			return strings.Join(s, ", ")
		}
		return fmt.Sprint(list)
	},
	"lines":  func(l []string) string { return strings.Join(l, "\n") },
	"fields": recordFields,
	"query":  withQuery,
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmt.Sprint(kv[i])] = kv[i+1]
		}
		return m
	},
}

// prettyJSON indents a JSON document for reading.
func prettyJSON(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		raw = b
	}
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

type field struct {
	Name, Value string
}

// recordFields lists a record's own fields but its kind, sorted by name.
func recordFields(data map[string]any) []field {
	out := make([]field, 0, len(data))
	for k, v := range data {
		if k == "kind" {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			b, _ := json.Marshal(x)
			s = string(b)
		}
		out = append(out, field{k, s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// withQuery returns path with the query q changed by key/value pairs; an
// empty value removes the key.
func withQuery(path string, q url.Values, kv ...string) string {
	v := url.Values{}
	for k, vs := range q {
		v[k] = append([]string(nil), vs...)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			v.Del(kv[i])
		} else {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}
