package launcher

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/internal/servertest"
)

var (
	motoOnce sync.Once
	motoURL  string
	motoCmd  *exec.Cmd
	motoErr  error
	motoSkip string
)

// moto returns the URL of a moto server (a real AWS API emulator) shared
// by the package's tests, started on a free loopback port; stopMoto in
// TestMain ends it. Each test works in a fleet and launch template of its
// own, so they do not see each other's instances.
func moto(t *testing.T) string {
	t.Helper()
	motoOnce.Do(func() {
		if out, err := exec.Command("python3", "-c", "import moto.server").CombinedOutput(); err != nil {
			motoSkip = fmt.Sprintf("moto is not installed (python3 -c 'import moto.server': %v %s); pip install 'moto[server]' to run the EC2 tests", err, bytes.TrimSpace(out))
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			motoErr = err
			return
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		var out servertest.LockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if motoErr = cmd.Start(); motoErr != nil {
			return
		}
		motoCmd = cmd
		motoURL = fmt.Sprintf("http://127.0.0.1:%d", port)
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err := c.Get(motoURL + "/moto-api/")
			if err == nil {
				resp.Body.Close()
				return
			}
			if time.Now().After(deadline) {
				motoErr = fmt.Errorf("moto did not answer within 60 s: %v\n%s", err, out.String())
				return
			}
		}
	})
	if motoSkip != "" {
		t.Skip(motoSkip)
	}
	require.NoError(t, motoErr)
	return motoURL
}

// stopMoto ends the moto server, by its PID.
func stopMoto() {
	if motoCmd != nil {
		_ = motoCmd.Process.Kill()
		_ = motoCmd.Wait()
	}
}

// capacityProxy sits between the backend and moto. It answers the
// RunInstances calls that fail says should fail with the EC2 error
// document, and records every RunInstances call it sees.
type capacityProxy struct {
	srv  *httptest.Server
	mu   sync.Mutex
	runs []url.Values
	// fail returns the error code for the n-th (from 1) RunInstances
	// call, or "" to pass it to moto.
	fail func(n int, form url.Values) string
}

func newCapacityProxy(t *testing.T, target string, fail func(n int, form url.Values) string) *capacityProxy {
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &capacityProxy{fail: fail}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{DisableKeepAlives: true}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		if form.Get("Action") == "RunInstances" {
			p.mu.Lock()
			p.runs = append(p.runs, form)
			n := len(p.runs)
			p.mu.Unlock()
			if code := p.fail(n, form); code != "" {
				status := http.StatusInternalServerError // as EC2 sends capacity errors
				if code == "UnauthorizedOperation" {
					status = http.StatusForbidden
				}
				w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
				w.WriteHeader(status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>injected by the test for %s in %s</Message></Error></Errors><RequestID>req-%d</RequestID></Response>`,
					code, form.Get("InstanceType"), form.Get("SubnetId"), n)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// placements returns "type@subnet" of every RunInstances call seen.
func (p *capacityProxy) placements() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.runs))
	for i, f := range p.runs {
		out[i] = f.Get("InstanceType") + "@" + f.Get("SubnetId")
	}
	return out
}

// ec2Env is one test's share of moto: subnets in two zones, a launch
// template, and a client that goes straight to moto.
type ec2Env struct {
	moto     string
	client   *ec2.Client
	http     *http.Client
	template string // launch template id
	subnets  []string
	fleet    string
}

var fakeCreds = credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")

func newEC2Env(t *testing.T) *ec2Env {
	t.Helper()
	e := &ec2Env{moto: moto(t), http: &http.Client{Transport: &http.Transport{}}, fleet: "test-" + strings.ToLower(t.Name())}
	e.fleet = strings.NewReplacer("/", "-", "_", "-").Replace(e.fleet)
	t.Cleanup(e.http.CloseIdleConnections)
	e.client = ec2.New(ec2.Options{Region: "us-east-1", Credentials: fakeCreds, BaseEndpoint: aws.String(e.moto), HTTPClient: e.http})
	ctx := t.Context()
	imgs, err := e.client.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}, MaxResults: aws.Int32(5)})
	require.NoError(t, err)
	require.NotEmpty(t, imgs.Images)
	vpc, err := e.client.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
	require.NoError(t, err)
	for i, az := range []string{"us-east-1a", "us-east-1b"} {
		sn, err := e.client.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, AvailabilityZone: aws.String(az),
			CidrBlock: aws.String(fmt.Sprintf("10.1.%d.0/24", i))})
		require.NoError(t, err)
		e.subnets = append(e.subnets, aws.ToString(sn.Subnet.SubnetId))
	}
	lt, err := e.client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(e.fleet),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: imgs.Images[0].ImageId, InstanceType: types.InstanceTypeT3Micro},
	})
	require.NoError(t, err)
	e.template = aws.ToString(lt.LaunchTemplate.LaunchTemplateId)
	return e
}

// backend returns an EC2 backend for the env through proxy p (or straight
// to moto when p is nil).
func (e *ec2Env) backend(t *testing.T, p *capacityProxy, cfg EC2Config) *EC2 {
	t.Helper()
	cfg.Endpoint = e.moto
	if p != nil {
		cfg.Endpoint = p.srv.URL
	}
	cfg.Region, cfg.Credentials, cfg.Fleet = "us-east-1", fakeCreds, e.fleet
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cfg.LaunchTemplateName == "" {
		cfg.LaunchTemplateID = e.template
	}
	// No kept-alive connections, so none outlive the test (goleak); a
	// BuildableClient, since the SDK takes no other with AWS_CA_BUNDLE set.
	cfg.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.DisableKeepAlives = true })
	b, err := NewEC2(t.Context(), cfg)
	require.NoError(t, err)
	return b
}

// describe returns the instance with its user data and shutdown
// behaviour.
func (e *ec2Env) describe(t *testing.T, id string) (types.Instance, string, string) {
	t.Helper()
	ctx := t.Context()
	out, err := e.client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.Len(t, out.Reservations, 1)
	require.Len(t, out.Reservations[0].Instances, 1)
	ud, err := e.client.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: aws.String(id), Attribute: types.InstanceAttributeNameUserData})
	require.NoError(t, err)
	script, err := base64.StdEncoding.DecodeString(aws.ToString(ud.UserData.Value))
	require.NoError(t, err)
	sb, err := e.client.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: aws.String(id), Attribute: types.InstanceAttributeNameInstanceInitiatedShutdownBehavior})
	require.NoError(t, err)
	return out.Reservations[0].Instances[0], string(script), aws.ToString(sb.InstanceInitiatedShutdownBehavior.Value)
}

func tags(in types.Instance) map[string]string {
	m := map[string]string{}
	for _, t := range in.Tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

var req = LaunchRequest{Pool: scanfleet.PoolBaremetal, Site: "dc-1", ServerURL: "https://scanfleet.example:8443",
	JoinToken: "sfj_onetime'secret", IdleTimeout: 5 * time.Minute, Transport: "http", Concurrency: 2}

// TestEC2Fallback checks the order of placements under capacity errors:
// every instance type in the first subnet, then in the next, one request
// each (the SDK does not retry them), success on the first that has
// capacity, and what the instance is started with.
func TestEC2Fallback(t *testing.T) {
	t.Parallel()
	e := newEC2Env(t)
	a, b := e.subnets[0], e.subnets[1]
	p := newCapacityProxy(t, e.moto, func(n int, _ url.Values) string {
		if n <= 4 {
			return "InsufficientInstanceCapacity"
		}
		return ""
	})
	be := e.backend(t, p, EC2Config{InstanceTypes: []string{"", "t4g.small", "c7g.medium"}, Subnets: []string{a, b}})
	inst, err := be.Launch(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, []string{"@" + a, "t4g.small@" + a, "c7g.medium@" + a, "@" + b, "t4g.small@" + b}, p.placements())
	require.Len(t, inst.Tries, 5)
	for i, try := range inst.Tries[:4] {
		require.Contains(t, try.Error, "InsufficientInstanceCapacity: injected", "try %d", i)
	}
	require.Equal(t, Try{InstanceType: "t4g.small", Subnet: b}, inst.Tries[4])
	require.Equal(t, EC2Backend, inst.Backend)
	require.Equal(t, scanfleet.PoolBaremetal, inst.Pool)
	require.Equal(t, "t4g.small in "+b, inst.Detail)

	got, script, shutdown := e.describe(t, inst.ID)
	require.Equal(t, types.InstanceType("t4g.small"), got.InstanceType)
	require.Equal(t, b, aws.ToString(got.SubnetId))
	require.Equal(t, "terminate", shutdown)
	tg := tags(got)
	require.Equal(t, "baremetal", tg[TagPool])
	require.Equal(t, "dc-1", tg[TagSite])
	require.Equal(t, "https://scanfleet.example:8443", tg[TagServer])
	require.Equal(t, e.fleet, tg[TagFleet])
	require.True(t, strings.HasPrefix(script, "#!/bin/sh\n"), script)
	require.Contains(t, script, `SCANFLEET_JOIN_TOKEN='sfj_onetime'\''secret' scanfleet worker`)
	require.Contains(t, script, `--server 'https://scanfleet.example:8443' --pool 'baremetal' --site 'dc-1'`)
	require.Contains(t, script, `--idle-timeout '5m0s' --transport 'http' --concurrency 2`)
	require.Contains(t, script, "\nshutdown -h now\n")
	require.NotContains(t, script, "curl -fsSL --retry 5 -o /usr/local/bin/scanfleet", "no BinaryURL, no download")
	// The launch template is used at its latest version.
	f := p.runs[4]
	require.Equal(t, e.template, f.Get("LaunchTemplate.LaunchTemplateId"))
	require.Equal(t, "$Latest", f.Get("LaunchTemplate.Version"))
	require.Equal(t, "1", f.Get("MinCount"))
	require.Equal(t, "1", f.Get("MaxCount"))
	require.NotEqual(t, p.runs[3].Get("ClientToken"), f.Get("ClientToken"), "placements share an idempotency token")

	running, err := be.Running(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{inst.ID}, ids(running))
	require.Equal(t, scanfleet.PoolBaremetal, running[0].Pool)
}

// TestEC2Errors checks how each kind of error steers the fallback.
func TestEC2Errors(t *testing.T) {
	t.Parallel()
	e := newEC2Env(t)
	a, b := e.subnets[0], e.subnets[1]
	types3 := []string{"t4g.micro", "c7g.medium", "c8gd.medium"}
	cases := []struct {
		name    string
		fail    func(form url.Values) string
		want    []string // placements tried
		outcome Outcome
		errText string
	}{
		{
			name:    "all exhausted",
			fail:    func(url.Values) string { return "InsufficientInstanceCapacity" },
			want:    []string{"t4g.micro@" + a, "c7g.medium@" + a, "c8gd.medium@" + a, "t4g.micro@" + b, "c7g.medium@" + b, "c8gd.medium@" + b},
			outcome: OutcomeNoCapacity,
			errText: "no capacity after 6 tries: t4g.micro in " + a + ": InsufficientInstanceCapacity: injected",
		},
		{
			name: "a quota drops the type in every subnet",
			fail: func(f url.Values) string {
				switch f.Get("InstanceType") {
				case "t4g.micro":
					return "InstanceLimitExceeded"
				case "c7g.medium":
					return "VcpuLimitExceeded"
				}
				return "Unsupported"
			},
			want:    []string{"t4g.micro@" + a, "c7g.medium@" + a, "c8gd.medium@" + a, "c8gd.medium@" + b},
			outcome: OutcomeNoCapacity,
			errText: "c8gd.medium in " + b + ": Unsupported: injected",
		},
		{
			name:    "any other error stops at once",
			fail:    func(url.Values) string { return "UnauthorizedOperation" },
			want:    []string{"t4g.micro@" + a},
			outcome: OutcomeFailed,
			errText: "UnauthorizedOperation",
		},
		{
			name: "unsupported moves on and works in the next subnet",
			fail: func(f url.Values) string {
				if f.Get("SubnetId") == a {
					return "Unsupported"
				}
				return ""
			},
			want:    []string{"t4g.micro@" + a, "c7g.medium@" + a, "c8gd.medium@" + a, "t4g.micro@" + b},
			outcome: OutcomeLaunched,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newCapacityProxy(t, e.moto, func(_ int, f url.Values) string { return tc.fail(f) })
			be := e.backend(t, p, EC2Config{InstanceTypes: types3, Subnets: []string{a, b}, Max: 100})
			inst, err := be.Launch(t.Context(), req)
			require.Equal(t, tc.want, p.placements())
			require.Equal(t, tc.outcome, OutcomeOf(err), "err: %v", err)
			if tc.outcome == OutcomeLaunched {
				require.Len(t, inst.Tries, len(tc.want))
				return
			}
			require.ErrorContains(t, err, tc.errText)
			var le *LaunchError
			require.ErrorAs(t, err, &le)
			require.Len(t, le.Tries, len(tc.want))
		})
	}
}

// TestEC2Max checks the cap: instances of the fleet pending or running
// count, whoever started them; stopped ones and other fleets do not.
func TestEC2Max(t *testing.T) {
	t.Parallel()
	e := newEC2Env(t)
	ctx := t.Context()
	start := func(fleet string) string {
		out, err := e.client.RunInstances(ctx, &ec2.RunInstancesInput{
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateId: aws.String(e.template)},
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{
				{Key: aws.String(TagFleet), Value: aws.String(fleet)}, {Key: aws.String(TagPool), Value: aws.String("baremetal")},
			}}},
		})
		require.NoError(t, err)
		return aws.ToString(out.Instances[0].InstanceId)
	}
	first, second := start(e.fleet), start(e.fleet)
	start("another-fleet")
	_, err := e.client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{start(e.fleet)}})
	require.NoError(t, err)

	be := e.backend(t, nil, EC2Config{LaunchTemplateName: e.fleet, Max: 3})
	running, err := be.Running(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{first, second}, ids(running))

	third, err := be.Launch(ctx, req)
	require.NoError(t, err)
	_, err = be.Launch(ctx, req)
	require.ErrorIs(t, err, ErrAtMax)
	require.ErrorContains(t, err, "3 of 3 instances pending or running")
	require.Equal(t, OutcomeAtMax, OutcomeOf(err))

	_, err = e.client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{first}})
	require.NoError(t, err)
	fourth, err := be.Launch(ctx, req)
	require.NoError(t, err)
	running, err = be.Running(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{second, third.ID, fourth.ID}, ids(running))
}

// TestEC2Retries checks that the SDK still retries what is worth retrying
// (throttling), while the fallback errors above were sent once.
func TestEC2Retries(t *testing.T) {
	t.Parallel()
	e := newEC2Env(t)
	p := newCapacityProxy(t, e.moto, func(n int, _ url.Values) string {
		if n == 1 {
			return "RequestLimitExceeded"
		}
		return ""
	})
	be := e.backend(t, p, EC2Config{Subnets: []string{e.subnets[0]}})
	inst, err := be.Launch(t.Context(), req)
	require.NoError(t, err)
	require.Len(t, inst.Tries, 1)
	require.Len(t, p.placements(), 2)
	require.Equal(t, p.runs[0].Get("ClientToken"), p.runs[1].Get("ClientToken"), "a retry must reuse the idempotency token")
}

// TestEC2Launcher runs the launcher over the EC2 backend: the backend's
// cap ends a tick's launches and is recorded once, however often it
// recurs, and instances that have not enrolled count as starting.
func TestEC2Launcher(t *testing.T) {
	t.Parallel()
	e := newEC2Env(t)
	be := e.backend(t, nil, EC2Config{InstanceTypes: []string{"t4g.small"}, Subnets: e.subnets, Max: 2, BinaryURL: "https://downloads.example/scanfleet"})
	w := newWorld()
	bm := scanfleet.PoolBaremetal
	l, err := New(w.config(map[scanfleet.Pool]PoolConfig{bm: {Backend: EC2Backend, Max: 5, Site: "dc-1"}}, map[string]Backend{EC2Backend: be}))
	require.NoError(t, err)
	w.setBacklog(bm, 4)
	for range 3 {
		require.NoError(t, l.Tick(t.Context()))
		w.advance(5 * time.Second)
	}
	at := l.Attempts()
	require.Len(t, at, 3, "%+v", at)
	require.Equal(t, OutcomeAtMax, at[0].Outcome)
	require.Equal(t, 2, at[0].Repeats)
	for _, a := range at[1:] {
		require.Equal(t, OutcomeLaunched, a.Outcome)
		require.True(t, strings.HasPrefix(a.Instance, "i-"), a.Instance)
		require.Equal(t, "t4g.small in "+e.subnets[0], a.Detail)
		_, script, _ := e.describe(t, a.Instance)
		require.Contains(t, script, "curl -fsSL --retry 5 -o /usr/local/bin/scanfleet 'https://downloads.example/scanfleet'")
		require.Contains(t, script, "SCANFLEET_JOIN_TOKEN='sfj_baremetal_dc-1_")
		require.Contains(t, script, "--server 'http://10.0.0.1:8080' --pool 'baremetal' --site 'dc-1'")
	}

	// The two enrol and take two tasks; two wait, but the backend is at
	// its cap, so nothing is tried until one ends.
	w.enrol(at[1].Instance, bm, 1)
	w.enrol(at[2].Instance, bm, 1)
	w.setBacklog(bm, 2)
	require.NoError(t, l.Tick(t.Context()))
	require.Equal(t, 3, l.Attempts()[0].Repeats)
	_, err = e.client.TerminateInstances(t.Context(), &ec2.TerminateInstancesInput{InstanceIds: []string{at[2].Instance}})
	require.NoError(t, err)
	w.advance(5 * time.Second)
	require.NoError(t, l.Tick(t.Context()))
	// The instance that ended frees its place at once, though its worker
	// still looks idle: one more launch, then the cap again.
	at = l.Attempts()
	require.Len(t, at, 5, "%+v", at)
	require.Equal(t, OutcomeAtMax, at[0].Outcome)
	require.Zero(t, at[0].Repeats)
	require.Equal(t, OutcomeLaunched, at[1].Outcome)
	require.Equal(t, "w-"+at[4].Instance, at[4].WorkerID)
	require.NotNil(t, at[4].EnrolledAt)
}

func TestEC2Config(t *testing.T) {
	t.Parallel()
	_, err := NewEC2(t.Context(), EC2Config{Region: "us-east-1", Credentials: fakeCreds})
	require.ErrorContains(t, err, "LaunchTemplateID, LaunchTemplateName: set exactly one")
	_, err = NewEC2(t.Context(), EC2Config{Region: "us-east-1", Credentials: fakeCreds, LaunchTemplateID: "lt-1", LaunchTemplateName: "x"})
	require.ErrorContains(t, err, "set exactly one")
	_, err = NewEC2(t.Context(), EC2Config{Region: "us-east-1", Credentials: fakeCreds, LaunchTemplateID: "lt-1", Max: -1})
	require.ErrorContains(t, err, "Max: -1")
	_, err = NewEC2(t.Context(), EC2Config{Region: "us-east-1", Credentials: fakeCreds, LaunchTemplateID: "lt-1", UserData: "{{.Nope"})
	require.ErrorContains(t, err, "UserData")
	b, err := NewEC2(t.Context(), EC2Config{Region: "us-east-1", Credentials: fakeCreds, LaunchTemplateID: "lt-1", UserData: "{{.Missing}}"})
	require.NoError(t, err)
	_, err = b.UserData(req)
	require.ErrorContains(t, err, "user data")
	big, err := NewEC2(t.Context(), EC2Config{Region: "us-east-1", Credentials: fakeCreds, LaunchTemplateID: "lt-1", UserData: strings.Repeat("#", 17<<10)})
	require.NoError(t, err)
	_, err = big.UserData(req)
	require.ErrorContains(t, err, "over EC2's 16 KiB")
	require.True(t, errors.Is(&LaunchError{Err: ErrNoCapacity}, ErrNoCapacity))
}

// TestUserDataScript runs the default user data with stand-ins for curl,
// scanfleet and shutdown (its system paths moved to a temp dir): the
// worker gets the join token intact in its environment, every flag, and
// the instance id as its name, and the instance powers off after it.
func TestUserDataScript(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	stubs := map[string]string{
		"curl": `case "$*" in
*"-X PUT"*api/token*) echo imds-token ;;
*"X-aws-ec2-metadata-token: imds-token"*instance-id*) echo i-0abc123 ;;
*" -o "*) echo "$*" > "$OUT/download" ;;
*) exit 22 ;;
esac`,
		"scanfleet": `printf '%s\n' "$@" > "$OUT/args"; printf '%s' "$SCANFLEET_JOIN_TOKEN" > "$OUT/token"; exit 3`,
		"shutdown":  `echo "$@" > "$OUT/shutdown"`,
	}
	for name, body := range stubs {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	}
	be, err := NewEC2(t.Context(), EC2Config{Region: "us-east-1", Credentials: fakeCreds, LaunchTemplateID: "lt-1",
		BinaryURL: "https://downloads.example/scanfleet?v=1&arch=arm64"})
	require.NoError(t, err)
	ud, err := be.UserData(req)
	require.NoError(t, err)
	raw, err := base64.StdEncoding.DecodeString(ud)
	require.NoError(t, err)
	script := strings.NewReplacer(
		"export PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin", "export PATH="+bin+":$PATH",
		"/var/lib/scanfleet", filepath.Join(dir, "state"),
		"/var/log/scanfleet-worker.log", filepath.Join(dir, "worker.log"),
		"/usr/local/bin/scanfleet", filepath.Join(dir, "downloaded"),
	).Replace(string(raw))
	require.NotEqual(t, string(raw), script)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = append(workerEnv(), "OUT="+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, name)
		return string(b)
	}
	require.Equal(t, "sfj_onetime'secret", read("token"))
	require.Equal(t, []string{"worker", "--server", "https://scanfleet.example:8443", "--pool", "baremetal", "--site", "dc-1",
		"--idle-timeout", "5m0s", "--transport", "http", "--concurrency", "2",
		"--name", "i-0abc123", "--state-file", filepath.Join(dir, "state", "worker.json")},
		strings.Split(strings.TrimSpace(read("args")), "\n"))
	require.Contains(t, read("download"), "https://downloads.example/scanfleet?v=1&arch=arm64")
	require.Equal(t, "-h now\n", read("shutdown"))
	require.Contains(t, read("worker.log"), "scanfleet worker exited with status 3")
	require.DirExists(t, filepath.Join(dir, "state"))
}
