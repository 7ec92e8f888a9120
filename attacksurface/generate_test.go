package attacksurface

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	cfg := GenConfig{VMs: 5000, Tags: 200, Rules: 800, Seed: 42}
	env := Generate(cfg)
	require.Equal(t, env, Generate(cfg), "same seed, same environment")
	require.NotEqual(t, env, Generate(GenConfig{VMs: 5000, Tags: 200, Rules: 800, Seed: 43}))

	require.Len(t, env.VMs, 5000)
	require.Len(t, env.Rules, 800)
	tagRe := regexp.MustCompile(`^[a-z]{2,5}$`)
	idRe := regexp.MustCompile(`^vm-[0-9a-f]{10}$`)
	ids := map[string]bool{}
	tags := map[string]bool{}
	perCount := make([]int, 6)
	for _, vm := range env.VMs {
		require.Regexp(t, idRe, vm.ID)
		require.False(t, ids[vm.ID], "duplicate id %s", vm.ID)
		ids[vm.ID] = true
		require.NotNil(t, vm.Tags)
		require.LessOrEqual(t, len(vm.Tags), 5)
		perCount[len(vm.Tags)]++
		seen := map[string]bool{}
		for _, tag := range vm.Tags {
			require.Regexp(t, tagRe, tag)
			require.False(t, seen[tag], "tag repeated on %s", vm.ID)
			seen[tag] = true
			tags[tag] = true
		}
	}
	for n, c := range perCount {
		require.InDelta(t, 5000/6, c, 150, "VMs with %d tags", n)
	}
	for _, r := range env.Rules {
		require.Regexp(t, tagRe, r.SourceTag)
		require.Regexp(t, tagRe, r.DestTag)
		tags[r.SourceTag] = true
		tags[r.DestTag] = true
	}
	require.LessOrEqual(t, len(tags), 200)
	require.Greater(t, len(tags), 190, "uniform draws cover nearly all tags")
	_, err := Build(env)
	require.NoError(t, err)
}

func TestGenConfigDefaults(t *testing.T) {
	t.Parallel()
	require.Equal(t, GenConfig{VMs: 100, Tags: 50, Rules: 50}, GenConfig{}.WithDefaults())
	require.Equal(t, GenConfig{VMs: 100, Tags: 50, Rules: 50, Seed: -1}, GenConfig{VMs: -5, Tags: -1, Rules: -2, Seed: -1}.WithDefaults())
	require.Equal(t, maxGenTags, GenConfig{Tags: 1 << 30}.WithDefaults().Tags)
	small := Generate(GenConfig{VMs: 50, Tags: 2, Rules: 3})
	for _, vm := range small.VMs {
		require.LessOrEqual(t, len(vm.Tags), 2)
	}
}
