// Command testexec is the executor the execscan tests run, modelled on the
// test executors of Faraday's agent dispatcher: its behaviour is chosen by
// the MODE argument (EXECUTOR_CONFIG_MODE), or by its first command-line
// argument for the check commands and the child it starts.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "check-ok":
			fmt.Println("testexec 1.0")
			return
		case "check-fail":
			fmt.Fprintln(os.Stderr, "testexec: the tool is not installed")
			os.Exit(3)
		case "child":
			child()
			return
		}
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	count := envInt("EXECUTOR_CONFIG_COUNT", 3)
	tag := envInt("EXECUTOR_CONFIG_TAG", 0)
	switch mode := os.Getenv("EXECUTOR_CONFIG_MODE"); mode {
	case "valid", "many":
		for i := 0; i < count; i++ {
			fmt.Fprintf(out, `{"kind":"host","ip":"10.%d.%d.%d","os":"testexec"}`+"\n", tag, i/256%256, i%256)
		}
	case "blank":
		fmt.Fprint(out, `{"kind":"host","ip":"10.0.0.1"}`+"\n\n   \n")
		fmt.Fprint(out, `{"kind":"host","ip":"10.0.0.2"}`+"\r\n\r\n")
		fmt.Fprint(out, `{"kind":"service","ip":"10.0.0.2","port":22,"name":"ssh"}`) // no final newline
	case "invalid":
		fmt.Fprintln(out, `{"kind":"host","ip":"10.0.0.1"}`)
		fmt.Fprintln(out, `{"kind":"host","ip":`)
		fmt.Fprintln(out, `{"kind":"host","ip":"10.0.0.3"}`)
	case "badrecord":
		fmt.Fprintln(out, `{"kind":"host","ip":"10.0.0.1"}`)
		fmt.Fprintln(out, `{"kind":"service","ip":"10.0.0.1","port":70000}`)
	case "huge":
		size := envInt("EXECUTOR_CONFIG_SIZE", 1<<20)
		fmt.Fprint(out, `{"kind":"host","ip":"10.0.0.1","padding":"`)
		chunk := strings.Repeat("x", 1<<16)
		for n := 0; n < size; n += len(chunk) {
			fmt.Fprint(out, chunk[:min(len(chunk), size-n)])
		}
		fmt.Fprintln(out, `"}`)
		fmt.Fprintln(out, `{"kind":"host","ip":"10.0.0.2"}`)
	case "stderr":
		fmt.Fprintln(os.Stderr, "starting")
		fmt.Fprintln(os.Stderr, strings.Repeat("e", envInt("EXECUTOR_CONFIG_SIZE", 10000)))
		fmt.Fprintln(os.Stderr, "")
		fmt.Fprintln(os.Stderr, "done")
		fmt.Fprintln(out, `{"kind":"host","ip":"10.0.0.1"}`)
	case "exit1":
		fmt.Fprintln(out, `{"kind":"host","ip":"10.0.0.1"}`)
		out.Flush()
		fmt.Fprintln(os.Stderr, "working")
		fmt.Fprintln(os.Stderr, "something broke")
		os.Exit(1)
	case "hang", "hang-noterm", "leave-child":
		if mode == "hang-noterm" {
			signal.Ignore(syscall.SIGTERM)
		}
		cmd := exec.Command(os.Args[0], "child", mode)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr // holds the pipes open, as a real tool's helper would
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		writePid(os.Getenv("EXECUTOR_CONFIG_PIDFILE"), os.Getpid())
		fmt.Fprintln(out, `{"kind":"host","ip":"10.0.0.1"}`)
		out.Flush()
		if mode == "leave-child" {
			// Exits at once; the child it started must not outlive the
			// task.
			for !exists(os.Getenv("EXECUTOR_CONFIG_PIDFILE") + ".child") {
				time.Sleep(10 * time.Millisecond)
			}
			return
		}
		sleepForever()
	case "env":
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		wd, _ := os.Getwd()
		b, _ := json.Marshal(map[string]any{"kind": "host", "ip": "192.0.2.1", "env": env, "wd": wd, "args": os.Args[1:]})
		fmt.Fprintln(out, string(b))
	case "bulk":
		fmt.Fprintln(out, `{"hosts":[{"ip":"10.0.0.7","hostnames":["www.example.com"],"services":[{"name":"https","port":443,"protocol":"tcp","status":"open","vulnerabilities":[{"name":"TLS 1.0 enabled","severity":"med"}]}],"vulnerabilities":[{"name":"ICMP timestamp","severity":"low"}]}]}`)
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		os.Exit(2)
	}
}

func child() {
	if len(os.Args) > 2 && os.Args[2] == "hang-noterm" {
		signal.Ignore(syscall.SIGTERM)
	}
	writePid(os.Getenv("EXECUTOR_CONFIG_PIDFILE")+".child", os.Getpid())
	sleepForever()
}

func writePid(path string, pid int) {
	if path == "" {
		return
	}
	// Written whole, then renamed: a reader never sees half a pid.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := os.Rename(tmp, path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// sleepForever blocks without the runtime taking it for a deadlock.
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}
