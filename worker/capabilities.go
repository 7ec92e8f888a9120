package worker

import (
	"syscall"

	"github.com/scanfleet/scanfleet"
)

// DetectCapabilities reports what this process can actually do, by trying
// it: a raw socket opened means raw_sockets. Task and recon data access
// come with the internal and baremetal pools, not from the machine.
func DetectCapabilities() []scanfleet.Requirement {
	caps := []scanfleet.Requirement{}
	if fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_TCP); err == nil {
		_ = syscall.Close(fd)
		caps = append(caps, scanfleet.RequireRawSockets)
	}
	return caps
}
