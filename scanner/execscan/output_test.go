package execscan

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/scanner"
)

// FuzzOutput feeds arbitrary program output to the line handler: it never
// panics, never hands the env a record the server would refuse, never
// reads a line past the limit, and names the line of any failure.
func FuzzOutput(f *testing.F) {
	f.Add([]byte(`{"kind":"host","ip":"10.0.0.1"}`+"\n"), false)
	f.Add([]byte("\n\n"+`{"kind":"service","ip":"10.0.0.1","port":22}`+"\r\n\n"), false)
	f.Add([]byte(`{"hosts":[{"ip":"10.0.0.7","services":[{"port":80,"vulnerabilities":[{"name":"x","severity":"low"}]}]}]}`), false)
	f.Add([]byte(`[{"kind":"domain","name":"www.example.com"}]`+"\n{not json\n"), true)
	f.Add([]byte(`{"kind":"host","ip":"10.0.0.1","x":"`+strings.Repeat("a", 600)+`"}`), true)
	f.Fuzz(func(t *testing.T, data []byte, skip bool) {
		const maxLine = 512
		env := &scanner.LocalEnv{}
		o := &output{env: env, maxLine: maxLine, skipInvalid: skip}
		err := o.read(context.Background(), bytes.NewReader(data))
		// Every record emitted passed LocalEnv's validation, which is the
		// server's: a refused one would be an "emit" error.
		require.Equal(t, o.records, int64(len(env.Records())))
		if err != nil {
			require.Contains(t, err.Error(), "stdout line ")
			require.NotContains(t, err.Error(), "emit:")
			if skip {
				require.Contains(t, err.Error(), "line limit", "with skip_invalid_lines only an over-long line fails")
			}
		}
		require.LessOrEqual(t, o.lines, int64(bytes.Count(data, []byte("\n"))+1))
		if err == nil {
			for _, line := range bytes.Split(data, []byte("\n")) {
				require.LessOrEqual(t, len(bytes.TrimRight(line, "\r")), maxLine, "an over-long line passed")
			}
		}
	})
}

func TestReadLogLine(t *testing.T) {
	t.Parallel()
	in := "short\n" + strings.Repeat("x", 50) + "\n\nno newline"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	type got struct {
		line string
		cut  int
	}
	var lines []got
	for {
		line, cut, err := readLogLine(br, nil, 20)
		lines = append(lines, got{string(line), cut})
		if err != nil {
			break
		}
	}
	require.Equal(t, []got{{"short", 0}, {strings.Repeat("x", 20), 30}, {"", 0}, {"no newline", 0}}, lines)
	require.Equal(t, "ab … [3 more bytes]", logText([]byte("ab"), 3))
	require.Equal(t, "a\uFFFDb", logText([]byte("a\xffb"), 0))
}
