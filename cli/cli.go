package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/scanfleet/scanfleet"
)

// Version is the program's version, set at build time with
// -ldflags "-X github.com/scanfleet/scanfleet/cli.Version=v1.2.3".
var Version = ""

// version returns Version, or the module version and VCS revision the
// binary was built from.
func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
		if v != "" && v != "(devel)" {
			return v
		}
	}
	return "dev"
}

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "SCANFLEET_"

// app carries the streams and state shared by the commands.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// Run runs the command line args (without the program name) and returns the
// exit code: 0 on success, 1 on error, 2 on a usage error.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "scanfleet: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "scanfleet: %s\n", describe(err))
	return 1
}

// describe turns an error into one line for a person.
func describe(err error) string {
	var e *scanfleet.Error
	if errors.As(err, &e) {
		msg := e.Message
		for i, d := range e.Details {
			if i == 0 {
				continue
			}
			msg += "\n  " + d
		}
		return msg
	}
	return err.Error()
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "scanfleet",
		Short: "Distributed attack-surface scanning",
		Long: `scanfleet schedules scans of what you own, runs them on a fleet of workers and
keeps what they find in an asset inventory.

Start a server with "scanfleet server"; the other commands talk to it with
--server and --token (or SCANFLEET_SERVER and SCANFLEET_TOKEN).`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.bindEnv(cmd) },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		a.serverCommand(),
		a.tokenCommand(),
		a.workspaceCommand(),
		a.scanCommand(),
		a.taskCommand(),
		a.recordsCommand(),
		a.attackSurfaceCommand(),
		a.workerCommand(),
		a.workerTokenCommand(),
		a.workersCommand(),
		a.launchesCommand(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintf(a.stdout, "scanfleet %s\n", version())
			},
		},
	)
	return root
}

// bindEnv sets every flag not given on the command line from its
// environment variable, if set.
func (a *app) bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := a.getenv(name)
		if v == "" {
			return
		}
		if serr := cmd.Flags().Set(f.Name, v); serr != nil {
			err = usagef("%s=%q: %v", name, v, serr)
		}
	})
	return err
}

// envHelp documents the variable of each flag in its usage line.
func envHelp(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		f.Usage += " (env " + EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")) + ")"
	})
}
