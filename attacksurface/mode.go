package attacksurface

import (
	"errors"
	"fmt"
)

// Mode selects how "who can attack VM X" is read. The package doc has a
// worked example of each.
type Mode string

// The three readings of "who can attack X".
const (
	// ModeTransitive follows lateral movement: a reached VM attacks further
	// with all of its tags. It is the default.
	ModeTransitive Mode = "transitive"
	// ModeDirect counts one hop: VMs that a single rule lets reach X.
	ModeDirect Mode = "direct"
	// ModeTag is surfacescan's reading: a closure over the rule graph
	// between tags, without moving through the VMs' other tags.
	ModeTag Mode = "tag"
)

// ErrUnknownMode is wrapped by the error for a mode name that is not one of
// transitive, direct or tag.
var ErrUnknownMode = errors.New("unknown mode")

// ParseMode reads a mode name as given in a query string; the empty string
// is ModeTransitive.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeTransitive:
		return ModeTransitive, nil
	case ModeDirect:
		return ModeDirect, nil
	case ModeTag:
		return ModeTag, nil
	}
	return "", fmt.Errorf("%w %q: want transitive, direct or tag", ErrUnknownMode, s)
}

// String returns the mode's name.
func (m Mode) String() string { return string(m) }

// index maps a mode to its slot in Graph.modes; the zero Mode is
// ModeTransitive.
func (m Mode) index() (int, error) {
	switch m {
	case "", ModeTransitive:
		return 0, nil
	case ModeDirect:
		return 1, nil
	case ModeTag:
		return 2, nil
	}
	return 0, fmt.Errorf("%w %q: want transitive, direct or tag", ErrUnknownMode, string(m))
}
