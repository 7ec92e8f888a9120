//go:build !unix

package portscan

// fileLimit is a guess where there is no RLIMIT_NOFILE.
func fileLimit() int { return 8192 }
