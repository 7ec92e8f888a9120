package scanfleet_test

import (
	"fmt"
	"strings"

	"github.com/scanfleet/scanfleet"
)

func ExampleScope_Compile() {
	scope := scanfleet.Scope{
		Include: []string{"10.0.0.0/24", "*.example.com", "example.com"},
		Exclude: []string{"10.0.0.5", "admin.example.com"},
	}
	m, err := scope.Compile()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, target := range []string{
		"10.0.0.7",
		"10.0.0.5",
		"::ffff:10.0.0.5",
		"10.0.0.4/30",
		"https://app.example.com:8443/login",
		"admin.example.com",
		"example.com.evil.com",
	} {
		d := m.Check(target)
		fmt.Printf("%-36s in=%-5t %s\n", target, d.In, d.Reason)
	}
	// Output:
	// 10.0.0.7                             in=true  10.0.0.7 is included by "10.0.0.0/24"
	// 10.0.0.5                             in=false 10.0.0.5 is excluded by "10.0.0.5"
	// ::ffff:10.0.0.5                      in=false 10.0.0.5 is excluded by "10.0.0.5"
	// 10.0.0.4/30                          in=false 10.0.0.4/30 is excluded by "10.0.0.5"
	// https://app.example.com:8443/login   in=true  app.example.com is included by "*.example.com"
	// admin.example.com                    in=false admin.example.com is excluded by "admin.example.com"
	// example.com.evil.com                 in=false example.com.evil.com matches no include entry
}

func ExampleScope_Normalize() {
	scope := scanfleet.Scope{Include: []string{"WWW.Example.COM.", "10.0.0.77/24", "bücher.example", "::ffff:192.168.1.1"}}
	n, err := scope.Normalize()
	fmt.Println(n.Include, err)

	_, err = scanfleet.Scope{Include: []string{"10.0.0.0/8", "0.0.0.0/0"}}.Normalize()
	fmt.Println(scanfleet.ErrorMessage(err))
	// Output:
	// [www.example.com 10.0.0.0/24 xn--bcher-kva.example 192.168.1.1] <nil>
	// scope.include[1]: "0.0.0.0/0" covers all of the IPv4 Internet (wider than /8); set scope.allow_broad to true if that is really meant
}

func ExampleParseRecords() {
	// An executor's stdout: native records and a Faraday bulk_create
	// document, one per line; blank lines are skipped.
	out := `{"kind": "domain", "name": "WWW.Example.com."}

{"hosts": [{"ip": "10.0.0.7", "services": [{"port": 443, "protocol": "tcp", "vulnerabilities": [{"name": "TLS 1.0 enabled", "severity": "med"}]}]}]}
{"kind": "http", "url": "HTTPS://www.example.com:443/#top", "status_code": 200}
`
	recs, err := scanfleet.ParseRecords(strings.NewReader(out), 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range recs {
		if r.Kind == scanfleet.KindFinding {
			fmt.Println(r.Kind, r.Data["name"], r.Data["severity"])
			continue
		}
		fmt.Println(r.Kind, r.Key)
	}

	_, err = scanfleet.ParseRecords(strings.NewReader(out+`{"kind": "service", "ip": "10.0.0.7", "port": 70000}`), 0)
	fmt.Println(scanfleet.ErrorCode(err)+":", scanfleet.ErrorMessage(err))
	// Output:
	// domain www.example.com
	// host 10.0.0.7
	// service 10.0.0.7:443/tcp
	// finding TLS 1.0 enabled medium
	// http https://www.example.com/
	// invalid: line 5: service.port: 70000 is not a port between 1 and 65535
}

func ExampleParsePortList() {
	ports, err := scanfleet.ParsePortList("8080,22,80-82,81")
	fmt.Println(ports, err)
	fmt.Println(scanfleet.FormatPortList(ports))
	_, err = scanfleet.ParsePortList("8100-8000")
	fmt.Println(err)
	// Output:
	// [22 80 81 82 8080] <nil>
	// 22,80-82,8080
	// range "8100-8000" ends before it starts
}

func ExampleTaskType_ValidateArgs() {
	args, err := scanfleet.NoopTaskType().ValidateArgs(map[string]any{"sleep": "90s"})
	fmt.Println(args, err)
	_, err = scanfleet.NoopTaskType().ValidateArgs(map[string]any{"sleep": "soon"})
	fmt.Println(scanfleet.ErrorMessage(err))
	// Output:
	// map[records:0 sleep:1m30s] <nil>
	// args.sleep: "soon" is not a duration such as "30s"
}
