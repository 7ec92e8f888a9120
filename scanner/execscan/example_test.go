package execscan_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/execscan"
)

// ExampleLoadDir loads the executors shipped with scanfleet and shows the
// task types a worker would register for them.
func ExampleLoadDir() {
	manifests, errs := execscan.LoadDir("../../executors")
	for _, err := range errs {
		fmt.Println("skipped:", err)
	}
	for _, m := range manifests {
		tt := m.TaskType()
		fmt.Println(tt.Name, tt.Pool(), tt.Timeout)
		for _, p := range tt.Params {
			fmt.Printf("  %s %s mandatory=%v\n", p.Name, p.Type, p.Mandatory)
		}
	}
	// Output:
	// nmap external 1h0m0s
	//   PORTS port-list mandatory=false
	//   SERVICE_VERSION boolean mandatory=false
	//   SKIP_DISCOVERY boolean mandatory=false
	//   TARGET list mandatory=false
	//   TIMING integer mandatory=false
}

// TestReadmeExample runs the example of executors/README.md as written
// there, so that the guide cannot drift from what the worker does.
func TestReadmeExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../executors/README.md")
	require.NoError(t, err)
	block := func(file, lang string) []byte {
		re := regexp.MustCompile("(?s)`executors/hello/" + regexp.QuoteMeta(file) + "`[^\n]*:\n\n```" + lang + "\n(.*?)```")
		m := re.FindSubmatch(readme)
		require.NotNil(t, m, "the README has no %s block for %s", lang, file)
		return m[1]
	}
	dir := filepath.Join(t.TempDir(), "hello")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "manifest.json"), block("manifest.json", "json"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hello.py"), block("hello.py", "python"), 0o755))
	m, err := execscan.Load(filepath.Join(dir, "manifest.json"))
	require.NoError(t, err)
	ex, err := execscan.New(m, execscan.Config{})
	require.NoError(t, err)
	env := &scanner.LocalEnv{}
	in := &scanfleet.TaskInput{TaskID: scanfleet.NewTaskID(), Targets: []string{"192.0.2.1", "www.example.com", "198.51.100.1"},
		Scope: &scanfleet.Scope{Include: []string{"192.0.2.0/24", "www.example.com"}}}
	require.NoError(t, ex.Run(context.Background(), in, env))
	recs := env.Records()
	require.Len(t, recs, 1)
	require.Equal(t, "192.0.2.1", recs[0].Data["ip"])
	require.Equal(t, "seen by hello", recs[0].Data["note"])
	require.Contains(t, env.Logs(), "skipping www.example.com: not an address")
	require.Equal(t, 1, env.Results()["out_of_scope"])
}
