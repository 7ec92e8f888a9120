package natsbus

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults shared by ServerConfig, BusConfig and ConsumerConfig. The server,
// the bus and every worker must agree on the stream name and subject prefix,
// so they are spelled once here.
const (
	// DefaultStream is the name of the JetStream stream holding dispatches.
	DefaultStream = "SCANFLEET_TASKS"
	// DefaultSubjectPrefix is the first token(s) of every subject the
	// package uses: <prefix>.tasks.<pool>.<site> and <prefix>.cmd.<worker>.
	DefaultSubjectPrefix = "scanfleet"
	// DefaultAckWait is how long a worker may hold a dispatch without
	// acking it or calling InProgress before JetStream redelivers it.
	DefaultAckWait = 60 * time.Second
	// AnySite is the subject token of a dispatch any site's worker may take.
	AnySite = "_"
)

// DefaultPools are the pools a Bus provisions at start: mrpf's three queues.
var DefaultPools = []string{"external", "internal", "baremetal"}

// ErrNotProvisioned is returned by NewConsumer when the durable consumer a
// worker pulls from does not exist yet: the server side creates consumers
// (Bus.Provision), workers never do.
var ErrNotProvisioned = errors.New("natsbus: consumer not provisioned")

// ErrWorkerUnreachable is returned by Bus.Command when no worker is
// subscribed to the command subject (the worker is offline).
var ErrWorkerUnreachable = errors.New("natsbus: worker unreachable")

// names derives every subject and consumer name from a stream and prefix.
type names struct {
	stream string
	prefix string
}

func (n names) taskSubject(pool, site string) string {
	if site == "" {
		site = AnySite
	}
	return n.prefix + ".tasks." + pool + "." + site
}

func (n names) tasksWildcard() string { return n.prefix + ".tasks.>" }

func (n names) poolWildcard(pool string) string { return n.prefix + ".tasks." + pool + ".>" }

func (n names) cmdSubject(workerID string) string { return n.prefix + ".cmd." + workerID }

// consumerName is the durable consumer for pool+site; site "" is the pool's
// shared any-site consumer. Pools cannot contain '_' (validatePool), so the
// first '_' ends the pool and "any" never collides with "site_<slug>".
func consumerName(pool, site string) string {
	if site == "" {
		return pool + "_any"
	}
	return pool + "_site_" + site
}

// consumersFor lists the consumers a worker of pool+site pulls from, its own
// site's first.
func consumersFor(pool, site string) []string {
	if site == "" {
		return []string{consumerName(pool, "")}
	}
	return []string{consumerName(pool, site), consumerName(pool, "")}
}

func (n names) validate() error {
	if err := validateStream(n.stream); err != nil {
		return err
	}
	return validatePrefix(n.prefix)
}

func validateStream(s string) error {
	if s == "" {
		return errors.New("Stream: is empty")
	}
	if len(s) > 64 || strings.ContainsAny(s, ".*> \t\r\n/\\") {
		return fmt.Errorf("Stream: %q must be at most 64 characters without '.', '*', '>', '/', '\\' or spaces", s)
	}
	return nil
}

func validatePrefix(p string) error {
	if p == "" {
		return errors.New("SubjectPrefix: is empty")
	}
	for _, tok := range strings.Split(p, ".") {
		if !isToken(tok, 64) {
			return fmt.Errorf("SubjectPrefix: %q must be dot-separated tokens of letters, digits, '-' and '_'", p)
		}
	}
	return nil
}

// validatePool accepts lower-case letters and digits: a pool name is a
// subject token and the first part of consumer names.
func validatePool(field, p string) error {
	if p == "" {
		return fmt.Errorf("%s: is empty", field)
	}
	if len(p) > 32 {
		return fmt.Errorf("%s: %q is longer than 32 characters", field, p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("%s: %q must be lower-case letters and digits", field, p)
		}
	}
	return nil
}

// validateSite accepts "" (any site) or a slug as the root package's
// ValidateSlug does: lower-case letters, digits, '-' and '_', starting with a
// letter or digit, at most 63 characters.
func validateSite(field, s string) error {
	if s == "" {
		return nil
	}
	if len(s) > 63 {
		return fmt.Errorf("%s: %q is longer than 63 characters", field, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')) {
			return fmt.Errorf("%s: %q must be lower-case letters, digits, '-' and '_', starting with a letter or digit", field, s)
		}
	}
	return nil
}

// validateWorkerID accepts what can be one subject token: the worker id is
// put into permission subjects, so '.', '*' and '>' must never pass.
func validateWorkerID(field, id string) error {
	if !isToken(id, 128) {
		return fmt.Errorf("%s: %q must be 1 to 128 letters, digits, '-' and '_'", field, id)
	}
	return nil
}

func isToken(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// inboxPrefix is the reply-subject prefix of a worker's connection; its
// permissions allow subscribing only below it, so a worker cannot read
// replies (and deliveries) meant for another.
func inboxPrefix(user string) string { return "_INBOX." + user }
