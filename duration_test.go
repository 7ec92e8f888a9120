package scanfleet

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Duration
		out  string // MarshalJSON of the result
	}{
		{`"24h"`, Duration(24 * time.Hour), `"24h0m0s"`},
		{`"90s"`, Duration(90 * time.Second), `"1m30s"`},
		{`""`, 0, `""`},
		{`null`, 0, `""`},
		{`90`, Duration(90 * time.Second), `"1m30s"`},
		{`1.5`, Duration(1500 * time.Millisecond), `"1.5s"`},
		{`0`, 0, `""`},
		{`-30`, Duration(-30 * time.Second), `"-30s"`},
		{`9223372036`, Duration(9223372036 * time.Second), `"2562047h47m16s"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var d Duration
			require.NoError(t, json.Unmarshal([]byte(tt.in), &d))
			require.Equal(t, tt.want, d)
			b, err := json.Marshal(d)
			require.NoError(t, err)
			require.Equal(t, tt.out, string(b))

			var again Duration
			require.NoError(t, json.Unmarshal(b, &again))
			require.Equal(t, d, again, "round trip")
		})
	}

	errs := []struct{ in, want string }{
		{`"soon"`, `"soon" is not a duration such as "24h"`},
		{`true`, `true is not a duration such as "24h"`},
		{`["1h"]`, `["1h"] is not a duration such as "24h"`},
		{`1e10`, `1e10 seconds is out of range for a duration`},
		{`-1e300`, `-1e300 seconds is out of range for a duration`},
		{`9223372037`, `9223372037 seconds is out of range for a duration`},
	}
	for _, tt := range errs {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var d Duration
			require.EqualError(t, json.Unmarshal([]byte(tt.in), &d), tt.want)
		})
	}

	require.Empty(t, Duration(0).String())
	require.Equal(t, "5m0s", Duration(5*time.Minute).String())
}
