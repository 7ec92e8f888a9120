package launcher

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/template"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/scanfleet/scanfleet"
)

// EC2Config configures an EC2 backend.
type EC2Config struct {
	// Region is the AWS region. Default: the SDK's (AWS_REGION, the shared
	// config file).
	Region string
	// Endpoint replaces the EC2 endpoint, for tests against an emulator.
	// Default "" (AWS).
	Endpoint string
	// Credentials default to the SDK's chain (environment, shared files,
	// instance role).
	Credentials aws.CredentialsProvider
	// LaunchTemplateID or LaunchTemplateName names the launch template
	// (AMI, security groups, instance profile, …); one is required.
	LaunchTemplateID   string
	LaunchTemplateName string
	// LaunchTemplateVersion default "$Latest".
	LaunchTemplateVersion string
	// InstanceTypes are tried in order in each subnet; "" is the launch
	// template's own type. Default [""].
	InstanceTypes []string
	// Subnets are tried in order, each with every instance type; "" is
	// the launch template's own subnet. Default [""].
	Subnets []string
	// Max is the most instances of Fleet pending or running at once, over
	// every pool (mrpf's MAX_BARE_METAL_WORKERS). Default 5.
	Max int
	// Fleet is the value of the scanfleet:fleet tag on every instance;
	// Max and Running count only instances with it, so that several
	// scanfleet installations share an account. Default "scanfleet".
	Fleet string
	// BinaryURL, if set, is where the user data downloads the scanfleet
	// binary from; otherwise the AMI must have it on PATH. Default "".
	BinaryURL string
	// UserData is a text/template for the instance's user data, executed
	// with UserDataParams; "quote" shell-quotes a value. Default
	// DefaultUserData.
	UserData string
	// Tags are added to every instance. Default none.
	Tags map[string]string
	// HTTPClient defaults to the SDK's, which honours AWS_CA_BUNDLE; with
	// a CA bundle set it must be an *awshttp.BuildableClient.
	HTTPClient aws.HTTPClient
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// EC2Backend is the name the EC2 backend is usually registered under in
// Config.Backends.
const EC2Backend = "ec2"

// Tags the EC2 backend puts on instances.
const (
	TagFleet  = "scanfleet:fleet"
	TagPool   = "scanfleet:pool"
	TagSite   = "scanfleet:site"
	TagServer = "scanfleet:server"
)

// WithDefaults returns the config with zero fields set to their defaults.
func (c EC2Config) WithDefaults() EC2Config {
	c.LaunchTemplateVersion = cmp.Or(c.LaunchTemplateVersion, "$Latest")
	if len(c.InstanceTypes) == 0 {
		c.InstanceTypes = []string{""}
	}
	if len(c.Subnets) == 0 {
		c.Subnets = []string{""}
	}
	c.Max = cmp.Or(c.Max, 5)
	c.Fleet = cmp.Or(c.Fleet, "scanfleet")
	c.UserData = cmp.Or(c.UserData, DefaultUserData)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c EC2Config) validate() error {
	switch {
	case (c.LaunchTemplateID == "") == (c.LaunchTemplateName == ""):
		return fmt.Errorf("LaunchTemplateID, LaunchTemplateName: set exactly one")
	case c.Max < 1:
		return fmt.Errorf("Max: %d is less than 1", c.Max)
	}
	return nil
}

// EC2 launches each worker as an EC2 instance from a launch template,
// falling back over instance types and subnets when AWS lacks capacity.
type EC2 struct {
	cfg      EC2Config
	client   *ec2.Client
	userData *template.Template
}

var _ Backend = (*EC2)(nil)

// NewEC2 returns an EC2 backend. It loads the AWS configuration but makes
// no request.
func NewEC2(ctx context.Context, cfg EC2Config) (*EC2, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ec2 backend config: %w", err)
	}
	tmpl, err := template.New("user-data").Funcs(template.FuncMap{"quote": shellQuote}).Parse(cfg.UserData)
	if err != nil {
		return nil, fmt.Errorf("ec2 backend config: UserData: %w", err)
	}
	b := &EC2{cfg: cfg, userData: tmpl}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(noRetryOnFallback)}, o.Retryables...)
			})
		}),
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(cfg.HTTPClient))
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	b.client = ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return b, nil
}

// What an EC2 error code means for the fallback.
type fallback int

const (
	stop     fallback = iota // any other error: trying elsewhere will not help
	nextType                 // this type, here: try the next type, then the next subnet
	skipType                 // this type, anywhere in the region: drop it
)

// fallbackFor classifies an EC2 error code.
//
// InsufficientInstanceCapacity and Unsupported (the type is not offered in
// the subnet's availability zone) hold for one type in one zone, so the
// next type, then the next subnet, may work. InstanceLimitExceeded and
// VcpuLimitExceeded are quotas of the account in the region: another type
// (of another family) may still work, but the same type in another subnet
// will not, so that type is not tried again. Anything else (a bad launch
// template, missing permissions, throttling after the SDK's retries)
// would fail everywhere and ends the launch at once.
func fallbackFor(code string) fallback {
	switch code {
	case "InsufficientInstanceCapacity", "InsufficientCapacity", "Unsupported":
		return nextType
	case "InstanceLimitExceeded", "VcpuLimitExceeded":
		return skipType
	}
	return stop
}

// noRetryOnFallback keeps the SDK's retryer off errors the fallback
// handles. EC2 answers InsufficientInstanceCapacity with HTTP 500, which
// the standard retryer would retry twice with backoff in the same place
// before the fallback could move on.
func noRetryOnFallback(err error) aws.Ternary {
	var ae smithy.APIError
	if errors.As(err, &ae) && fallbackFor(ae.ErrorCode()) != stop {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
}

// Launch runs one instance: every instance type in each subnet in turn,
// until one has capacity. It returns ErrAtMax when Fleet already has Max
// instances pending or running.
func (b *EC2) Launch(ctx context.Context, req LaunchRequest) (Instance, error) {
	running, err := b.Running(ctx)
	if err != nil {
		return Instance{}, err
	}
	if len(running) >= b.cfg.Max {
		return Instance{}, fmt.Errorf("%w: %d of %d instances pending or running", ErrAtMax, len(running), b.cfg.Max)
	}
	userData, err := b.UserData(req)
	if err != nil {
		return Instance{}, err
	}
	lt := &types.LaunchTemplateSpecification{Version: aws.String(b.cfg.LaunchTemplateVersion)}
	if b.cfg.LaunchTemplateID != "" {
		lt.LaunchTemplateId = aws.String(b.cfg.LaunchTemplateID)
	} else {
		lt.LaunchTemplateName = aws.String(b.cfg.LaunchTemplateName)
	}
	tags := []types.Tag{
		{Key: aws.String("Name"), Value: aws.String("scanfleet-worker-" + string(req.Pool))},
		{Key: aws.String(TagFleet), Value: aws.String(b.cfg.Fleet)},
		{Key: aws.String(TagPool), Value: aws.String(string(req.Pool))},
		{Key: aws.String(TagSite), Value: aws.String(req.Site)},
		{Key: aws.String(TagServer), Value: aws.String(req.ServerURL)},
	}
	for k, v := range b.cfg.Tags {
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	var tries []Try
	skipped := map[string]bool{}
	for _, subnet := range b.cfg.Subnets {
		for _, itype := range b.cfg.InstanceTypes {
			if skipped[itype] {
				continue
			}
			in := &ec2.RunInstancesInput{
				MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				LaunchTemplate: lt,
				UserData:       aws.String(userData),
				// The worker powers the instance off when it exits: that
				// must end it, not leave it stopped.
				InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate,
				TagSpecifications:                 []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: tags}},
				// One token per placement: the SDK's retries of a lost
				// answer never start a second instance.
				ClientToken: aws.String(clientToken()),
			}
			if itype != "" {
				in.InstanceType = types.InstanceType(itype)
			}
			if subnet != "" {
				in.SubnetId = aws.String(subnet)
			}
			out, err := b.client.RunInstances(ctx, in)
			if err == nil && len(out.Instances) == 0 {
				err = fmt.Errorf("run instances: the answer holds no instance")
			}
			if err == nil {
				tries = append(tries, Try{InstanceType: itype, Subnet: subnet})
				inst := out.Instances[0]
				itype = cmp.Or(string(inst.InstanceType), itype)
				subnet = cmp.Or(aws.ToString(inst.SubnetId), subnet)
				return Instance{
					ID: aws.ToString(inst.InstanceId), Backend: EC2Backend, Pool: req.Pool,
					Detail: fmt.Sprintf("%s in %s", cmpOr(itype, "template type"), cmpOr(subnet, "template subnet")),
					Tries:  tries,
				}, nil
			}
			if ctx.Err() != nil {
				return Instance{}, &LaunchError{Tries: tries, Err: fmt.Errorf("run instances: %w", ctx.Err())}
			}
			var ae smithy.APIError
			code := ""
			if errors.As(err, &ae) {
				code = ae.ErrorCode()
				tries = append(tries, Try{InstanceType: itype, Subnet: subnet, Error: code + ": " + ae.ErrorMessage()})
			} else {
				tries = append(tries, Try{InstanceType: itype, Subnet: subnet, Error: err.Error()})
			}
			switch fallbackFor(code) {
			case stop:
				return Instance{}, &LaunchError{Tries: tries, Err: fmt.Errorf("run instances: %w", err)}
			case skipType:
				skipped[itype] = true
			}
			b.cfg.Logger.Info("ec2: no capacity, trying the next placement", slog.String("instance_type", itype),
				slog.String("subnet", subnet), slog.String("code", code))
		}
	}
	return Instance{}, &LaunchError{Tries: tries, Err: ErrNoCapacity}
}

// Running lists the instances of Fleet that are pending or running.
func (b *EC2) Running(ctx context.Context) ([]Instance, error) {
	pages := ec2.NewDescribeInstancesPaginator(b.client, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + TagFleet), Values: []string{b.cfg.Fleet}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running"}},
	}})
	var out []Instance
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe instances: %w", err)
		}
		for _, r := range page.Reservations {
			for _, inst := range r.Instances {
				in := Instance{ID: aws.ToString(inst.InstanceId), Backend: EC2Backend,
					Detail: fmt.Sprintf("%s in %s, %s", inst.InstanceType, aws.ToString(inst.SubnetId), stateName(inst.State))}
				for _, t := range inst.Tags {
					if aws.ToString(t.Key) == TagPool {
						in.Pool = scanfleet.Pool(aws.ToString(t.Value))
					}
				}
				out = append(out, in)
			}
		}
	}
	return out, nil
}

func stateName(s *types.InstanceState) string {
	if s == nil {
		return "unknown state"
	}
	return string(s.Name)
}

// UserDataParams is what the user data template is executed with.
type UserDataParams struct {
	ServerURL   string
	JoinToken   string
	Pool        string
	Site        string
	IdleTimeout string // a Go duration, e.g. "5m0s"
	Transport   string
	Concurrency int
	BinaryURL   string
}

// DefaultUserData is the default user data: a shell script, which
// cloud-init runs as root at first boot. It fetches the binary if
// BinaryURL is set, names the worker after the instance id (so the
// launcher sees it enrol), runs it until its idle timeout, and powers
// the instance off, which terminates it.
const DefaultUserData = `#!/bin/sh
# scanfleet worker, started by the launcher of {{.ServerURL}}
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin HOME=/root
mkdir -p /var/lib/scanfleet
LOG=/var/log/scanfleet-worker.log
{{- if .BinaryURL}}
curl -fsSL --retry 5 -o /usr/local/bin/scanfleet {{quote .BinaryURL}} >>"$LOG" 2>&1 && chmod 0755 /usr/local/bin/scanfleet
{{- end}}
IMDS=http://169.254.169.254/latest
TOKEN=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$IMDS/api/token")
ID=$(curl -fsS -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/meta-data/instance-id")
SCANFLEET_JOIN_TOKEN={{quote .JoinToken}} scanfleet worker \
  --server {{quote .ServerURL}} --pool {{quote .Pool}} --site {{quote .Site}} \
  --idle-timeout {{quote .IdleTimeout}} --transport {{quote .Transport}} --concurrency {{.Concurrency}} \
  --name "${ID:-$(hostname)}" --state-file /var/lib/scanfleet/worker.json >>"$LOG" 2>&1
echo "scanfleet worker exited with status $?" >>"$LOG"
shutdown -h now
`

// UserData returns the base64 user data for req.
func (b *EC2) UserData(req LaunchRequest) (string, error) {
	var buf bytes.Buffer
	err := b.userData.Execute(&buf, UserDataParams{
		ServerURL: req.ServerURL, JoinToken: req.JoinToken, Pool: string(req.Pool), Site: req.Site,
		IdleTimeout: req.IdleTimeout.String(), Transport: req.Transport, Concurrency: max(req.Concurrency, 1),
		BinaryURL: b.cfg.BinaryURL,
	})
	if err != nil {
		return "", fmt.Errorf("user data: %w", err)
	}
	if buf.Len() > 16<<10 {
		return "", fmt.Errorf("user data: %d bytes is over EC2's 16 KiB", buf.Len())
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func clientToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
