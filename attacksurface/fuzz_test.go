package attacksurface

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzLoad feeds arbitrary bytes to the environment parser. Whatever it
// accepts must build, answer every mode like the naive oracle, and survive
// a WriteJSON round trip; whatever it rejects must be an ErrInvalidEnv,
// with a position for malformed JSON. The committed corpus is in
// testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(sampleEnv))
	f.Add([]byte(`{"vms":[{"vm_id":"a","tags":["x"]},{"vm_id":"b","tags":["y"]}],"fw_rules":[{"source_tag":"x","dest_tag":"y"},{"source_tag":"y","dest_tag":"x"}]}`))
	f.Add([]byte(`{"vms":[{"vm_id":"a"},{"vm_id":"a"}]}`))
	f.Add([]byte(`{"vms":[}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Parse(bytes.NewReader(data))
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidEnv)
			var pe *ParseError
			if errors.As(err, &pe) {
				require.GreaterOrEqual(t, pe.Line, 1)
				require.GreaterOrEqual(t, pe.Column, 1)
			}
			return
		}
		g, err := Build(env)
		require.NoError(t, err, "Parse accepted what Build rejects")
		require.Equal(t, len(env.VMs), g.VMCount())

		if len(env.VMs) <= 30 && len(env.Rules) <= 60 {
			o := newOracle(env)
			for _, vm := range env.VMs {
				for _, mode := range []Mode{ModeTransitive, ModeDirect, ModeTag} {
					got, err := g.Attackers(vm.ID, mode)
					require.NoError(t, err)
					require.Equal(t, o.attackers(vm.ID, mode), got, "%s %s", vm.ID, mode)
				}
			}
		}

		var buf bytes.Buffer
		require.NoError(t, env.WriteJSON(&buf))
		back, err := Parse(&buf)
		require.NoError(t, err, "WriteJSON output does not parse: %s", buf.String())
		require.Equal(t, normalize(env), normalize(back))
	})
}

// normalize makes nil and empty lists compare equal.
func normalize(e *Env) *Env {
	out := &Env{VMs: slices.Clone(e.VMs), Rules: slices.Clone(e.Rules)}
	if out.VMs == nil {
		out.VMs = []VM{}
	}
	if out.Rules == nil {
		out.Rules = []Rule{}
	}
	for i := range out.VMs {
		if out.VMs[i].Tags == nil {
			out.VMs[i].Tags = []string{}
		}
	}
	return out
}
