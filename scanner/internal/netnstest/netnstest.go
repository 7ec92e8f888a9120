// Package netnstest builds private network namespaces for the tests of the
// raw-socket scanners, so that their packets never leave the machine: each
// test makes its own namespaces, joined by veth pairs, with no default
// route, and deletes them when it ends.
//
// Code runs inside a namespace through Do, which locks a fresh goroutine to
// its OS thread and moves that thread into the namespace with setns(2).
// The thread is never handed back to the Go scheduler (the goroutine exits
// still locked, so the runtime ends the thread), which is why nothing else
// can run in the namespace by accident. Sockets keep the namespace they were
// made in, so an executor that opens its sockets on the goroutine that
// calls Run can be tested this way in-process, with scanner.LocalEnv. The
// alternative, re-executing the test binary under `ip netns exec`, would
// need the records and artifacts shipped back across a pipe.
package netnstest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Require skips the test unless it runs as root with iproute2's ip.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (run the tests as root, as .ci/run does)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip to create network namespaces (apt-get install iproute2)")
	}
}

// New creates a namespace named prefix-<random>, with lo up, and deletes
// it when the test ends.
func New(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	IP(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	IP(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// IP runs ip with args and fails the test with its output on error.
func IP(t testing.TB, args ...string) {
	t.Helper()
	Cmd(t, "ip", args...)
}

// Cmd runs a command and fails the test with its output on error.
func Cmd(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, bytes.TrimSpace(out))
	}
}

// Sysctl sets a sysctl inside namespace ns, e.g. "net.ipv4.ip_forward", "1".
func Sysctl(t testing.TB, ns, key, value string) {
	t.Helper()
	Cmd(t, "ip", "netns", "exec", ns, "sysctl", "-qw", key+"="+value)
}

// Veth joins namespace a's interface ifA, with address addrA (CIDR), to
// namespace b's interface ifB with addrB, and brings both up.
func Veth(t testing.TB, a, ifA, addrA, b, ifB, addrB string) {
	t.Helper()
	// Created directly in the namespaces: the names never exist in the
	// host's namespace, where they could collide with another test's.
	IP(t, "-n", a, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b)
	IP(t, "-n", a, "addr", "add", addrA, "dev", ifA)
	IP(t, "-n", b, "addr", "add", addrB, "dev", ifB)
	IP(t, "-n", a, "link", "set", ifA, "up")
	IP(t, "-n", b, "link", "set", ifB, "up")
}

// Do runs f on an OS thread that is inside namespace ns and returns f's
// error. The thread ends with f.
func Do(ns string, f func() error) error {
	fd, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer unix.Close(fd)
	done := make(chan error, 1)
	go func() {
		// No UnlockOSThread: the thread's namespace is changed for good,
		// so it must die with this goroutine.
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		done <- f()
	}()
	return <-done
}
