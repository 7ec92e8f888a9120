//go:build linux

package portscan_test

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/portscan"
)

// A scan of one port of a loopback address, where a server greets like
// OpenSSH, run in-process with scanner.LocalEnv.
func Example() {
	ln, err := net.Listen("tcp", "127.0.0.9:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	ex, err := portscan.New(portscan.Config{})
	if err != nil {
		panic(err)
	}
	env := &scanner.LocalEnv{}
	err = ex.Run(context.Background(), &scanfleet.TaskInput{
		Targets: []string{"127.0.0.9"},
		Args:    map[string]any{"ports": port},
	}, env)
	if err != nil {
		panic(err)
	}
	for _, r := range env.Records() {
		if r.Kind == scanfleet.KindService {
			fmt.Println(r.Data["state"], r.Data["name"], r.Data["banner"])
		}
	}
	fmt.Println(env.Results()["counts"])
	// Output:
	// open ssh SSH-2.0-OpenSSH_9.6
	// map[closed:0 filtered:0 open:1 out-of-scope:0 timeout:0]
}
