//go:build !linux

package synscan

import (
	"context"
	"errors"

	"github.com/scanfleet/scanfleet"
)

func run(context.Context, *scanfleet.TaskInput, scanfleet.ExecEnv, params) error {
	return errors.New("synscan: raw packet scanning is implemented for Linux only (AF_PACKET)")
}
