// Command scanfleet is the scanfleet server, worker and client in one
// binary; see package cli.
package main

import (
	"context"
	"os"

	"github.com/scanfleet/scanfleet/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
