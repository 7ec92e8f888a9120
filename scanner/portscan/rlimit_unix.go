//go:build unix

package portscan

import "golang.org/x/sys/unix"

// fileLimit raises the soft limit on open files to the hard limit, as the
// Go runtime does at start on some systems, and returns the soft limit.
func fileLimit() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	return int(min(lim.Cur, 1<<30))
}
