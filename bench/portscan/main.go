// Command portscan runs scanfleet's port scanners in this process, with
// scanner.LocalEnv, for run.sh to time them beside masscan, zmap and nmap.
// It stands in for `scanfleet scan --local [--syn]` until the CLI registers
// these two executors.
//
//	go run ./bench/portscan -type synscan -ports 1-65535 -rate 1000000 -o open.txt 10.200.0.2
//
// Open ports are written to -o, one "ip:port" a line; the task's output
// (counts, probes sent, rate) is printed as JSON on stdout.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/portscan"
	"github.com/scanfleet/scanfleet/scanner/synscan"
)

func main() {
	typ := flag.String("type", "synscan", "executor: synscan or portscan")
	ports := flag.String("ports", "1-65535", "ports to probe")
	rate := flag.Int64("rate", synscan.DefaultRate, "probes per second")
	retries := flag.Int64("retries", synscan.DefaultRetries, "extra passes over unanswered probes")
	wait := flag.Duration("wait", synscan.DefaultWait, "wait for late replies after each pass")
	senders := flag.Int64("senders", synscan.DefaultSenders, "sending threads (synscan; 0: one per CPU)")
	concurrency := flag.Int64("concurrency", portscan.DefaultConcurrency, "connections in flight (portscan)")
	out := flag.String("o", "", "write open ports here, one ip:port a line")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(*typ, flag.Args(), *ports, *rate, *retries, *senders, *concurrency, *wait, *out); err != nil {
		fmt.Fprintln(os.Stderr, "portscan:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(typ string, targets []string, ports string, rate, retries, senders, concurrency int64, wait time.Duration, out string) error {
	var ex scanfleet.Executor
	args := map[string]any{"ports": ports}
	switch typ {
	case "synscan":
		ex = synscan.Executor{}
		args["rate"] = rate
		args["retries"] = retries
		args["senders"] = senders
		args["wait"] = wait.String()
	case "portscan":
		// A connect scan, compared with nmap -sT: no banner grabs.
		pe, err := portscan.New(portscan.Config{})
		if err != nil {
			return err
		}
		ex = pe
		args["banners"] = false
		args["retries"] = retries
		args["concurrency"] = concurrency
	default:
		return fmt.Errorf("unknown -type %q", typ)
	}
	w := bufio.NewWriter(os.Stdout)
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = bufio.NewWriterSize(f, 1<<16)
	}
	env := &scanner.LocalEnv{
		OnRecord: func(r scanfleet.Record) error {
			// Written without fmt: on net20 this runs 1.3 million
			// times, beside the scanner it times.
			if r.Kind != scanfleet.KindService {
				return nil
			}
			ip, _ := r.Data["ip"].(string)
			w.WriteString(ip)
			w.WriteByte(':')
			var b [20]byte
			switch n := r.Data["port"].(type) {
			case int64:
				w.Write(strconv.AppendInt(b[:0], n, 10))
			case int:
				w.Write(strconv.AppendInt(b[:0], int64(n), 10))
			case float64:
				w.Write(strconv.AppendInt(b[:0], int64(n), 10))
			default:
				w.WriteString(fmt.Sprint(n))
			}
			return w.WriteByte('\n')
		},
		OnLog: func(line string) { fmt.Fprintln(os.Stderr, line) },
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	in := &scanfleet.TaskInput{Type: typ, Args: args, Targets: targets, Scope: &scanfleet.Scope{Include: targets}}
	began := time.Now()
	err := ex.Run(ctx, in, env)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	res := env.Results()
	res["wall_s"] = time.Since(began).Seconds()
	b, _ := json.Marshal(res)
	fmt.Println(strings.TrimSpace(string(b)))
	return err
}
