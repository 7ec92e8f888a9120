package launcher

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

func TestParsePoolFlag(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		pool scanfleet.Pool
		want PoolConfig
		err  string
	}{
		{in: "baremetal=ec2:5", pool: scanfleet.PoolBaremetal, want: PoolConfig{Backend: "ec2", Max: 5}},
		{in: "external=process:4,idle=2m,concurrency=2,site=lab,transport=nats", pool: scanfleet.PoolExternal,
			want: PoolConfig{Backend: "process", Max: 4, IdleTimeout: 2 * time.Minute, Concurrency: 2, Site: "lab", Transport: "nats"}},
		{in: "baremetal", err: "want POOL=BACKEND:MAX"},
		{in: "gpu=ec2:5", err: `pool "gpu"`},
		{in: "baremetal=ec2", err: "want POOL=BACKEND:MAX"},
		{in: "baremetal=:5", err: "want POOL=BACKEND:MAX"},
		{in: "baremetal=ec2:0", err: `max "0"`},
		{in: "baremetal=ec2:five", err: `max "five"`},
		{in: "baremetal=ec2:5,idle=0s", err: `idle "0s"`},
		{in: "baremetal=ec2:5,idle=soon", err: `idle "soon"`},
		{in: "baremetal=ec2:5,site=Lab", err: `site "Lab"`},
		{in: "baremetal=ec2:5,transport=smtp", err: `transport "smtp"`},
		{in: "baremetal=ec2:5,concurrency=0", err: `concurrency "0"`},
		{in: "baremetal=ec2:5,colour=red", err: `unknown setting "colour"`},
		{in: "baremetal=ec2:5,idle=1m,idle=2m", err: `"idle=2m" is not a new KEY=VALUE`},
		{in: "baremetal=ec2:5,", err: `"" is not a new KEY=VALUE`},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			pool, pc, err := ParsePoolFlag(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.pool, pool)
			require.Equal(t, tc.want, pc)
		})
	}
}

// FuzzParsePoolFlag checks that whatever ParsePoolFlag accepts makes a
// valid launcher config.
func FuzzParsePoolFlag(f *testing.F) {
	for _, s := range []string{"baremetal=ec2:5", "external=process:4,idle=2m,concurrency=2,site=lab,transport=nats", "internal=k8s:1,site=a-b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pool, pc, err := ParsePoolFlag(s)
		if err != nil {
			return
		}
		if _, err := scanfleet.ParsePool(string(pool)); err != nil {
			t.Fatalf("ParsePoolFlag(%q) accepted pool %q", s, pool)
		}
		full := Config{Pools: map[scanfleet.Pool]PoolConfig{pool: pc}}.WithDefaults().Pools[pool]
		if err := full.validate(); err != nil {
			t.Fatalf("ParsePoolFlag(%q) accepted an invalid pool config: %v", s, err)
		}
	})
}

func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want Outcome
	}{
		{nil, OutcomeLaunched},
		{fmt.Errorf("%w: 5 of 5", ErrAtMax), OutcomeAtMax},
		{&LaunchError{Err: ErrNoCapacity}, OutcomeNoCapacity},
		{&LaunchError{Err: errors.New("run instances: denied")}, OutcomeFailed},
		{errors.New("create join token: 503"), OutcomeFailed},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, OutcomeOf(tc.err), "%v", tc.err)
	}
}

func ExampleParsePoolFlag() {
	pool, pc, err := ParsePoolFlag("baremetal=ec2:5,idle=10m")
	if err != nil {
		panic(err)
	}
	fmt.Println(pool, pc.Backend, pc.Max, pc.IdleTimeout)
	// Output: baremetal ec2 5 10m0s
}
