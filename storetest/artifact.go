package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

var artifactTests = map[string]func(*testing.T, scanfleet.Store){
	"PutListOpen": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "acme")
		task := createTasks(t, s, newTask("acme", scanfleet.TaskStarted, at(0)))[0]
		// Larger than one stored chunk, and not a multiple of it.
		content := make([]byte, 9<<20+123)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range content {
			content[i] = byte(r.Uint32())
		}
		a := &scanfleet.Artifact{TaskID: task.ID, Name: "capture.pcap", ContentType: "application/vnd.tcpdump.pcap", CreatedAt: at(0)}
		require.NoError(t, s.PutArtifact(ctx, a, bytes.NewReader(content)))
		sum := sha256.Sum256(content)
		require.Equal(t, int64(len(content)), a.Size)
		require.Equal(t, hex.EncodeToString(sum[:]), a.SHA256)

		list, err := s.ListArtifacts(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, []*scanfleet.Artifact{a}, list)

		got, rc, err := s.OpenArtifact(ctx, task.ID, "capture.pcap")
		require.NoError(t, err)
		require.Equal(t, a, got)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.True(t, bytes.Equal(content, data), "content differs: %d bytes back of %d", len(data), len(content))

		// Replacing keeps one artifact with the new content.
		require.NoError(t, s.PutArtifact(ctx, &scanfleet.Artifact{TaskID: task.ID, Name: "capture.pcap"}, bytes.NewReader([]byte("small"))))
		_, rc, err = s.OpenArtifact(ctx, task.ID, "capture.pcap")
		require.NoError(t, err)
		data, err = io.ReadAll(rc)
		require.NoError(t, err)
		require.Equal(t, "small", string(data))
		list, err = s.ListArtifacts(ctx, task.ID)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, "application/octet-stream", list[0].ContentType)
	},
	"Empty": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "acme")
		task := createTasks(t, s, newTask("acme", scanfleet.TaskStarted, at(0)))[0]
		require.NoError(t, s.PutArtifact(ctx, &scanfleet.Artifact{TaskID: task.ID, Name: "empty"}, bytes.NewReader(nil)))
		_, rc, err := s.OpenArtifact(ctx, task.ID, "empty")
		require.NoError(t, err)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.Empty(t, data)
	},
	"Refusals": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "acme")
		task := createTasks(t, s, newTask("acme", scanfleet.TaskStarted, at(0)))[0]
		requireCode(t, s.PutArtifact(ctx, &scanfleet.Artifact{TaskID: "nope", Name: "a"}, bytes.NewReader(nil)), scanfleet.ENOTFOUND)
		requireCode(t, s.PutArtifact(ctx, &scanfleet.Artifact{TaskID: task.ID, Name: "../etc/passwd"}, bytes.NewReader(nil)), scanfleet.EINVALID)
		_, _, err := s.OpenArtifact(ctx, task.ID, "missing")
		requireCode(t, err, scanfleet.ENOTFOUND)
		_, err = s.ListArtifacts(ctx, "nope")
		requireCode(t, err, scanfleet.ENOTFOUND)
		list, err := s.ListArtifacts(ctx, task.ID)
		require.NoError(t, err)
		require.Empty(t, list)
	},
}
