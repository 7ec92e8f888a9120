package scanner_test

import (
	"context"
	"fmt"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// A plan is what a network scanner may touch: its targets clipped to the
// scope, with what was refused and why.
func ExampleNewPlan() {
	in := &scanfleet.TaskInput{
		Targets: []string{"10.0.0.0/29", "192.168.1.1"},
		Scope:   &scanfleet.Scope{Include: []string{"10.0.0.0/24"}, Exclude: []string{"10.0.0.4/30"}},
	}
	pl, err := scanner.NewPlan(context.Background(), in, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(pl.Count(), "addresses:", pl.Prefixes)
	for _, s := range pl.OutOfScope {
		fmt.Printf("skipped %s: %s\n", s.Target, s.Reason)
	}
	// Output:
	// 4 addresses: [10.0.0.0/30]
	// skipped 10.0.0.0/29: partly out of scope: only 10.0.0.0/30 is scanned
	// skipped 192.168.1.1: 192.168.1.1 matches no include entry
}
