package synscan_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/synscan"
)

func TestTaskType(t *testing.T) {
	t.Parallel()
	tt := synscan.TaskType()
	require.NoError(t, tt.Validate())
	require.Equal(t, scanfleet.PoolBaremetal, tt.Pool())
	require.Equal(t, []scanfleet.Requirement{scanfleet.RequireRawSockets}, tt.Requirements)
}

func TestBadArgumentsAreInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"ports": "0-10"}, "args.ports"},
		{map[string]any{"rate": 0}, "args.rate"},
		{map[string]any{"retries": 11}, "args.retries"},
		{map[string]any{"wait": "soon"}, "args.wait"},
		{map[string]any{"source_port": 65500}, "args.source_port"},
		{map[string]any{"speed": 1}, "args.speed"},
	} {
		err := synscan.Executor{}.Run(t.Context(), &scanfleet.TaskInput{Targets: []string{"127.0.0.1"}, Args: tc.args}, &scanner.LocalEnv{})
		require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err), "%v", err)
		require.Contains(t, scanfleet.ErrorMessage(err), tc.want)
	}
}
