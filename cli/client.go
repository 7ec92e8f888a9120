package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
)

// client calls a scanfleet server's API.
type client struct {
	base  string
	token string
	http  *http.Client
}

// clientOpts are the flags of every command that talks to a server.
type clientOpts struct {
	server, token, output string
}

func addClientFlags(cmd *cobra.Command) *clientOpts {
	o := &clientOpts{}
	fs := cmd.Flags()
	fs.StringVar(&o.server, "server", "http://127.0.0.1:8080", "server URL")
	fs.StringVar(&o.token, "token", "", "API token")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json, jsonl or csv")
	return o
}

func (o *clientOpts) client() (*client, error) {
	if o.token == "" {
		return nil, usagef("no API token: pass --token or set SCANFLEET_TOKEN (the server printed an admin token on first start; \"scanfleet token create\" makes more)")
	}
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--server %q is not an http(s) URL such as http://127.0.0.1:8080", o.server)
	}
	switch o.output {
	case "table", "json", "jsonl", "csv":
	default:
		return nil, usagef("--output %q is not table, json, jsonl or csv", o.output)
	}
	return &client{base: strings.TrimRight(o.server, "/"), token: o.token, http: &http.Client{Timeout: 5 * time.Minute}}, nil
}

// do sends a request and decodes a JSON answer into out (if not nil). An
// error answer becomes a *scanfleet.Error with the server's message.
func (c *client) do(ctx context.Context, method, path string, in any, out any) error {
	var body io.Reader
	ctype := ""
	switch v := in.(type) {
	case nil:
	case rawBody:
		body, ctype = v.r, v.contentType
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the server at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var eb scanfleet.ErrorBody
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &eb) != nil || eb.Error.Message == "" {
			return fmt.Errorf("server answered %s to %s %s", resp.Status, method, path)
		}
		return eb.Error.Err()
	}
	if out == nil {
		return nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	return nil
}

// rawBody sends a body as it is, with its content type.
type rawBody struct {
	r           io.Reader
	contentType string
}

// listPage is the shape of every list answer.
type listPage[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// list fetches one page, or every page with all, of a list route.
func list[T any](ctx context.Context, c *client, path string, q url.Values, all bool) ([]T, string, error) {
	var items []T
	for {
		var p listPage[T]
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		if err := c.do(ctx, http.MethodGet, path+sep+q.Encode(), nil, &p); err != nil {
			return nil, "", err
		}
		items = append(items, p.Items...)
		if !all || p.NextCursor == "" {
			return items, p.NextCursor, nil
		}
		q.Set("cursor", p.NextCursor)
	}
}

// printList fetches a list route (one page, or every page with --all),
// prints it as toTable renders it, and says how to get the next page.
func printList[T any](ctx context.Context, a *app, c *client, path string, q url.Values, p *pageFlags, format string, toTable func(...T) *table) error {
	items, next, err := list[T](ctx, c, path, q, p.all)
	if err != nil {
		return err
	}
	if err := toTable(items...).print(a.stdout, format); err != nil {
		return err
	}
	moreHint(a.stderr, next)
	return nil
}

// pageFlags are the pagination flags of list commands.
type pageFlags struct {
	limit  int
	cursor string
	all    bool
}

func addPageFlags(cmd *cobra.Command) *pageFlags {
	p := &pageFlags{}
	cmd.Flags().IntVar(&p.limit, "limit", 100, "items per page (1-1000)")
	cmd.Flags().StringVar(&p.cursor, "cursor", "", "cursor of the page to show, from a previous listing")
	cmd.Flags().BoolVar(&p.all, "all", false, "fetch every page")
	return p
}

func (p *pageFlags) values() url.Values {
	q := url.Values{}
	q.Set("limit", fmt.Sprint(p.limit))
	if p.cursor != "" {
		q.Set("cursor", p.cursor)
	}
	return q
}
