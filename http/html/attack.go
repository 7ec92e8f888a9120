package html

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/attacksurface"
)

// vmsListed bounds the VMs offered in the picker; any other is typed.
const vmsListed = 1000

type attackData struct {
	Workspaces []*scanfleet.Workspace
	Workspace  string
	Cloud      *scanfleet.CloudEnv
	VMs        []attacksurface.VM
	MoreVMs    bool
	VM         string
	VMName     string
	Mode       string
	Modes      []attacksurface.Mode
	Attackers  []attacker
	Asked      bool
	Errors     formErrors
	Uploaded   bool
}

type attacker struct{ ID, Name string }

func (u *UI) handleAttack(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	d := attackData{Workspace: q.Get("workspace"), VM: strings.TrimSpace(q.Get("vm")), Mode: q.Get("mode"),
		Errors: formErrors{}, Uploaded: q.Get("uploaded") == "1"}
	return u.showAttack(w, r, s, http.StatusOK, d)
}

func (u *UI) showAttack(w http.ResponseWriter, r *http.Request, s *session, status int, d attackData) error {
	ctx := r.Context()
	d.Modes = []attacksurface.Mode{attacksurface.ModeTransitive, attacksurface.ModeDirect, attacksurface.ModeTag}
	var err error
	if d.Workspaces, _, err = u.b.ListWorkspaces(ctx, scanfleet.Page{Limit: scanfleet.MaxPageLimit}); err != nil {
		return err
	}
	if d.Workspace == "" && len(d.Workspaces) > 0 {
		d.Workspace = d.Workspaces[0].Name
	}
	if d.Workspace == "" {
		u.render(w, r, status, "attack", s, "Attack surface", d)
		return nil
	}
	d.Cloud, err = u.b.GetCloud(ctx, d.Workspace)
	if scanfleet.ErrorCode(err) == scanfleet.ENOTFOUND {
		d.Cloud = nil
		if _, werr := u.b.FindWorkspace(ctx, d.Workspace); werr != nil {
			return werr
		}
	} else if err != nil {
		return err
	}
	names := map[string]string{}
	if d.Cloud != nil {
		env, err := attacksurface.Parse(bytes.NewReader(d.Cloud.Data))
		if err != nil {
			return err // the store holds what PutCloud validated
		}
		d.MoreVMs = len(env.VMs) > vmsListed
		d.VMs = env.VMs[:min(len(env.VMs), vmsListed)]
		for _, vm := range env.VMs {
			names[vm.ID] = vm.Name
		}
	}
	if d.Cloud != nil && d.VM != "" {
		d.Asked, d.VMName = true, names[d.VM]
		mode, err := attacksurface.ParseMode(d.Mode)
		if err != nil {
			d.Errors["mode"] = err.Error()
		} else {
			ids, err := u.b.Attackers(ctx, d.Workspace, d.VM, mode)
			switch scanfleet.ErrorCode(err) {
			case "":
				for _, id := range ids {
					d.Attackers = append(d.Attackers, attacker{ID: id, Name: names[id]})
				}
			case scanfleet.ENOTFOUND:
				d.Errors["vm"] = scanfleet.ErrorMessage(err)
				status = http.StatusNotFound
			default:
				return err
			}
		}
	}
	u.render(w, r, status, "attack", s, "Attack surface", d)
	return nil
}

// handleUploadCloud stores an uploaded cloud environment. The file is
// streamed into the analysis, not held in memory or on disk first; the
// form sends the workspace before the file.
func (u *UI) handleUploadCloud(w http.ResponseWriter, r *http.Request, s *session) error {
	r.Body = http.MaxBytesReader(w, r.Body, u.cfg.MaxUploadBytes+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return scanfleet.Errorf(scanfleet.EINVALID, "form: send the environment as a multipart/form-data upload")
	}
	d := attackData{Errors: formErrors{}}
	var stored bool
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		var me *http.MaxBytesError
		if errors.As(err, &me) {
			return scanfleet.Errorf(scanfleet.ETOOLARGE, "env: larger than the %d-byte limit for a cloud environment", u.cfg.MaxUploadBytes)
		} else if err != nil {
			return scanfleet.Errorf(scanfleet.EINVALID, "form: %v", err)
		}
		switch part.FormName() {
		case "workspace":
			b, _ := io.ReadAll(io.LimitReader(part, 1024))
			d.Workspace = strings.TrimSpace(string(b))
		case "env":
			if d.Workspace == "" {
				return scanfleet.Errorf(scanfleet.EINVALID, "workspace: choose a workspace before the file")
			}
			body := &limitReader{r: part, n: u.cfg.MaxUploadBytes}
			if _, err := u.b.PutCloud(r.Context(), d.Workspace, body); err != nil {
				switch scanfleet.ErrorCode(err) {
				case scanfleet.EINVALID, scanfleet.ETOOLARGE:
					d.Errors["env"] = scanfleet.ErrorMessage(err)
					return u.showAttack(w, r, s, scanfleet.HTTPStatus(scanfleet.ErrorCode(err)), d)
				}
				return err
			}
			stored = true
		}
		part.Close()
	}
	if !stored {
		d.Errors["env"] = "choose a file to upload"
		return u.showAttack(w, r, s, http.StatusBadRequest, d)
	}
	http.Redirect(w, r, "/attack?uploaded=1&workspace="+url.QueryEscape(d.Workspace), http.StatusSeeOther)
	return nil
}

// limitReader reads at most n bytes of r and fails with the error of
// http.MaxBytesReader beyond, which the backend reports as too large.
type limitReader struct {
	r    io.Reader
	n    int64 // bytes still allowed
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.over {
		return 0, &http.MaxBytesError{}
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	k, err := l.r.Read(p)
	if int64(k) > l.n {
		l.over = true
		return int(l.n), &http.MaxBytesError{}
	}
	l.n -= int64(k)
	return k, err
}
