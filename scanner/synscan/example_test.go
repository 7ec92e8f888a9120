package synscan_test

import (
	"fmt"

	"github.com/scanfleet/scanfleet/scanner/synscan"
)

func ExampleTaskType() {
	tt := synscan.TaskType()
	fmt.Println(tt.Name, tt.Pool())
	for _, p := range tt.Params {
		fmt.Println(p.Name, p.Type, p.Default)
	}
	// Output:
	// synscan baremetal
	// ports port-list 1-1024
	// rate integer 100000
	// retries integer 1
	// wait duration 1s
	// source_port integer 0
	// send_rst boolean false
	// senders integer 0
}
